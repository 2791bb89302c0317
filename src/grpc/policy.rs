//! Per-RPC policies: the rate-limit class and who may call, declared once in the proto as the
//! `(maru.v1.policy)` method option (`proto/maru/v1/policy.proto`) and read from the compiled
//! descriptor set when the server starts. A maru method without a complete policy is a start-up
//! error naming it. Health and reflection get a built-in policy: anyone, exempt from rate limits.
//!
//! prost's generated descriptor types drop custom options, so the set is read with
//! prost-reflect, which decodes the options with their extensions.

use std::collections::HashMap;
use std::sync::Arc;

use prost_reflect::{DescriptorPool, DynamicMessage, ExtensionDescriptor};

use super::pb;
use crate::caller::Auth;
use crate::error::{AppError, Reason};

/// The RPC kinds of the `grpc_type` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrpcType {
    Unary,
    ClientStream,
    ServerStream,
    BidiStream,
}

impl GrpcType {
    pub fn as_str(self) -> &'static str {
        match self {
            GrpcType::Unary => "unary",
            GrpcType::ClientStream => "client_stream",
            GrpcType::ServerStream => "server_stream",
            GrpcType::BidiStream => "bidi_stream",
        }
    }
}

/// One known RPC: the labels it reports under and its policy.
#[derive(Debug, Clone)]
pub struct MethodInfo {
    pub service: &'static str,
    pub method: &'static str,
    pub grpc_type: GrpcType,
    pub policy: Policy,
}

/// UNAUTHENTICATED `TOKEN_MISSING`: the call needs a bearer token.
pub(super) fn token_missing() -> AppError {
    AppError::unauthenticated(Reason::TokenMissing, "this call requires a bearer token")
}

/// The refusal of a presented token that was rejected for `reason`.
pub(super) fn token_error(reason: Reason) -> AppError {
    let message = match reason {
        Reason::TokenExpired => "access token expired; refresh it",
        Reason::SessionEnded => "the session of this access token has ended; log in again",
        _ => "access token is not valid",
    };
    AppError::unauthenticated(reason, message)
}

/// Full name of the method option.
pub const POLICY_EXTENSION: &str = "maru.v1.policy";

/// The rate-limit buckets (`maru.v1.RateClass`; the closed set of the `bucket` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RpcClass {
    Auth,
    Sensitive,
    Write,
    Read,
}

impl RpcClass {
    pub const ALL: [RpcClass; 4] = [RpcClass::Auth, RpcClass::Sensitive, RpcClass::Write, RpcClass::Read];

    /// The bucket's name in settings (`rate_limit.buckets.<name>`) and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            RpcClass::Auth => "auth",
            RpcClass::Sensitive => "sensitive",
            RpcClass::Write => "write",
            RpcClass::Read => "read",
        }
    }
}

/// Who may call an RPC (`maru.v1.Caller`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallerRule {
    /// The request carries its own credential; a bearer token is not looked at.
    None,
    /// Anyone; a presented token must be valid.
    AnonymousOk,
    /// A valid bearer token.
    Required,
    /// A valid bearer token of a deployment admin.
    Admin,
}

impl CallerRule {
    /// Refuses a request whose credentials do not satisfy the rule: UNAUTHENTICATED
    /// (`TOKEN_MISSING`, or the rejected token's reason) or PERMISSION_DENIED `ADMIN_REQUIRED`.
    pub fn admit(self, auth: &Auth) -> Result<(), AppError> {
        match (self, auth) {
            (CallerRule::None, _) => Ok(()),
            (_, Auth::Rejected(reason)) => Err(token_error(*reason)),
            (CallerRule::AnonymousOk, _) => Ok(()),
            (CallerRule::Required | CallerRule::Admin, Auth::Anonymous) => Err(token_missing()),
            (CallerRule::Required, Auth::Caller(_)) => Ok(()),
            (CallerRule::Admin, Auth::Caller(c)) => c.require_admin(),
        }
    }
}

/// The admission policy of one RPC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// The bucket the call counts against; `None`: exempt from rate limits and load shedding.
    pub rate_class: Option<RpcClass>,
    pub caller: CallerRule,
    /// Guests may call it although it is not a read (`guests: true` in the proto).
    pub guests: bool,
}

impl Policy {
    /// Health and reflection: anyone (credentials are not looked at), never rate limited.
    pub const BUILT_IN: Policy = Policy { rate_class: None, caller: CallerRule::None, guests: false };

    /// Refuses a request whose credentials do not satisfy the caller rule (see
    /// [`CallerRule::admit`]), then a guest's call of anything but a read: PERMISSION_DENIED
    /// `GUEST_READ_ONLY` unless the RPC declares `guests: true`. Methods that do not look at the
    /// bearer token (`CALLER_NONE`) do not know who calls and are not refused here.
    pub fn admit(&self, auth: &Auth) -> Result<(), AppError> {
        self.caller.admit(auth)?;
        match auth {
            Auth::Caller(c)
                if c.is_guest()
                    && self.caller != CallerRule::None
                    && self.rate_class != Some(RpcClass::Read)
                    && !self.guests =>
            {
                metrics::counter!("maru_guest_refusals_total").increment(1);
                Err(guest_read_only())
            }
            _ => Ok(()),
        }
    }
}

/// PERMISSION_DENIED `GUEST_READ_ONLY`: a guest called an RPC that changes state.
pub fn guest_read_only() -> AppError {
    AppError::permission_denied(Reason::GuestReadOnly, "guests can only look around; create an account to take part")
}

/// Why the method registry could not be built (the server refuses to start).
#[derive(Debug, Clone, thiserror::Error)]
pub enum RegistryError {
    #[error("the compiled descriptor set cannot be read: {0}")]
    Descriptor(String),
    #[error(
        "every maru RPC needs `option (maru.v1.policy) = {{rate_class: RATE_CLASS_…, caller: CALLER_…}}` \
         (proto/maru/v1/policy.proto); missing or incomplete on: {}",
        .0.join(", ")
    )]
    MissingPolicy(Vec<String>),
}

/// Every RPC the server answers, keyed by path (`/pkg.Service/Method`), with its labels and
/// policy.
#[derive(Debug)]
pub struct Registry {
    methods: HashMap<String, Arc<MethodInfo>>,
}

/// Services served by libraries, whose descriptors are not maru's: their methods get
/// [`Policy::BUILT_IN`].
const BUILT_IN: &[(&str, &str, GrpcType)] = &[
    ("grpc.health.v1.Health", "Check", GrpcType::Unary),
    ("grpc.health.v1.Health", "Watch", GrpcType::ServerStream),
    ("grpc.reflection.v1.ServerReflection", "ServerReflectionInfo", GrpcType::BidiStream),
    ("grpc.reflection.v1alpha.ServerReflection", "ServerReflectionInfo", GrpcType::BidiStream),
];

impl Registry {
    /// Reads every service of an encoded `FileDescriptorSet` with its methods' policies, then
    /// adds health and reflection. Fails naming every method whose policy is missing or has
    /// an unspecified field. Names are leaked: the registry lives as long as the process, and
    /// metric labels need `'static` strings.
    pub fn from_descriptor_set(bytes: &[u8]) -> Result<Self, RegistryError> {
        let pool = DescriptorPool::decode(bytes).map_err(|e| RegistryError::Descriptor(e.to_string()))?;
        let ext = pool
            .get_extension_by_name(POLICY_EXTENSION)
            .ok_or_else(|| RegistryError::Descriptor(format!("the option {POLICY_EXTENSION} is not declared")))?;
        let mut methods = HashMap::new();
        let mut missing = Vec::new();
        for service in pool.services() {
            for method in service.methods() {
                let grpc_type = match (method.is_client_streaming(), method.is_server_streaming()) {
                    (false, false) => GrpcType::Unary,
                    (true, false) => GrpcType::ClientStream,
                    (false, true) => GrpcType::ServerStream,
                    (true, true) => GrpcType::BidiStream,
                };
                match policy_of(&method.options(), &ext) {
                    Some(policy) => insert(&mut methods, service.full_name(), method.name(), grpc_type, policy),
                    None => missing.push(format!("{}/{}", service.full_name(), method.name())),
                }
            }
        }
        if !missing.is_empty() {
            missing.sort();
            return Err(RegistryError::MissingPolicy(missing));
        }
        for (service, method, grpc_type) in BUILT_IN {
            insert(&mut methods, service, method, *grpc_type, Policy::BUILT_IN);
        }
        Ok(Self { methods })
    }

    /// The method at `path` (`/pkg.Service/Method`).
    pub fn get(&self, path: &str) -> Option<&Arc<MethodInfo>> {
        self.methods.get(path)
    }

    pub fn methods(&self) -> &HashMap<String, Arc<MethodInfo>> {
        &self.methods
    }
}

fn insert(
    methods: &mut HashMap<String, Arc<MethodInfo>>,
    service: &str,
    method: &str,
    grpc_type: GrpcType,
    policy: Policy,
) {
    let info = MethodInfo { service: leak(service), method: leak(method), grpc_type, policy };
    methods.insert(format!("/{service}/{method}"), Arc::new(info));
}

fn leak(s: &str) -> &'static str {
    Box::leak(s.to_owned().into_boxed_str())
}

/// The policy in a method's options; `None` when absent or with an unspecified field.
fn policy_of(options: &DynamicMessage, ext: &ExtensionDescriptor) -> Option<Policy> {
    if !options.has_extension(ext) {
        return None;
    }
    let p: pb::Policy = options.get_extension(ext).as_message()?.transcode_to().ok()?;
    let rate_class = match pb::RateClass::try_from(p.rate_class).ok()? {
        pb::RateClass::Unspecified => return None,
        pb::RateClass::Auth => RpcClass::Auth,
        pb::RateClass::Sensitive => RpcClass::Sensitive,
        pb::RateClass::Write => RpcClass::Write,
        pb::RateClass::Read => RpcClass::Read,
    };
    let caller = match pb::Caller::try_from(p.caller).ok()? {
        pb::Caller::Unspecified => return None,
        pb::Caller::AnonymousOk => CallerRule::AnonymousOk,
        pb::Caller::Required => CallerRule::Required,
        pb::Caller::Admin => CallerRule::Admin,
        pb::Caller::None => CallerRule::None,
    };
    Some(Policy { rate_class: Some(rate_class), caller, guests: p.guests })
}

#[cfg(test)]
mod tests {
    use prost::Message;
    use prost::encoding::{WireType, encode_key, encode_varint};
    use prost_types::{DescriptorProto, FileDescriptorProto, FileDescriptorSet, MethodDescriptorProto};
    use uuid::Uuid;

    use super::*;
    use crate::caller::{Caller, Role};
    use crate::error::Reason;

    /// A length-delimited field `number` holding `bytes`, as protoc writes it.
    fn field(number: u32, bytes: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        encode_key(number, WireType::LengthDelimited, &mut out);
        encode_varint(bytes.len() as u64, &mut out);
        out.extend_from_slice(bytes);
        out
    }

    /// An encoded method of `Ping` → `Ping`; with `policy`, its options carry the extension.
    fn method(name: &str, policy: Option<pb::Policy>) -> Vec<u8> {
        let mut m = MethodDescriptorProto {
            name: Some(name.into()),
            input_type: Some(".maru.v1.test.Ping".into()),
            output_type: Some(".maru.v1.test.Ping".into()),
            ..Default::default()
        }
        .encode_to_vec();
        if let Some(p) = policy {
            // MethodDescriptorProto.options (4) = MethodOptions { (maru.v1.policy) (50100) = p }.
            m.extend(field(4, &field(50100, &p.encode_to_vec())));
        }
        m
    }

    /// The real descriptor set plus a file with one service of the given methods. prost-types
    /// cannot express the extension, so the service is assembled from encoded parts, and the
    /// real set is extended by appending (re-encoding it would drop every policy).
    fn set_with(methods: &[Vec<u8>]) -> Vec<u8> {
        let mut service = field(1, b"ProbeService");
        for m in methods {
            service.extend(field(2, m));
        }
        let mut file = FileDescriptorProto {
            name: Some("maru/v1/test/probe.proto".into()),
            package: Some("maru.v1.test".into()),
            dependency: vec!["maru/v1/policy.proto".into()],
            message_type: vec![DescriptorProto { name: Some("Ping".into()), ..Default::default() }],
            syntax: Some("proto3".into()),
            ..Default::default()
        }
        .encode_to_vec();
        file.extend(field(6, &service)); // FileDescriptorProto.service
        let mut set = super::super::FILE_DESCRIPTOR_SET.to_vec();
        set.extend(field(1, &file)); // FileDescriptorSet.file
        set
    }

    fn policy(rate_class: pb::RateClass, caller: pb::Caller) -> Option<pb::Policy> {
        Some(pb::Policy { rate_class: rate_class as i32, caller: caller as i32, guests: false })
    }

    #[test]
    fn the_compiled_protos_give_every_maru_method_a_policy() {
        let r = Registry::from_descriptor_set(super::super::FILE_DESCRIPTOR_SET).expect("registry builds");
        let check_in = r.get("/maru.v1.EventService/CheckIn").expect("CheckIn is registered");
        assert_eq!(
            check_in.policy,
            Policy { rate_class: Some(RpcClass::Write), caller: CallerRule::Required, guests: false }
        );
        let health = r.get("/grpc.health.v1.Health/Check").expect("health is registered");
        assert_eq!(health.policy, Policy::BUILT_IN);
        assert_eq!(r.get("/grpc.health.v1.Health/Watch").map(|m| m.grpc_type), Some(GrpcType::ServerStream));
    }

    #[test]
    fn a_method_without_a_complete_policy_fails_naming_it() {
        let set = set_with(&[
            method("Bare", None),
            method("NoClass", policy(pb::RateClass::Unspecified, pb::Caller::Required)),
            method("NoCaller", policy(pb::RateClass::Read, pb::Caller::Unspecified)),
            method("Fine", policy(pb::RateClass::Read, pb::Caller::AnonymousOk)),
        ]);
        let err = Registry::from_descriptor_set(&set).unwrap_err();
        let RegistryError::MissingPolicy(names) = &err else { panic!("{err}") };
        assert_eq!(
            names,
            &[
                "maru.v1.test.ProbeService/Bare",
                "maru.v1.test.ProbeService/NoCaller",
                "maru.v1.test.ProbeService/NoClass"
            ]
        );
        assert!(err.to_string().contains("maru.v1.test.ProbeService/Bare"), "{err}");

        // The same service with a policy everywhere builds, and the policy is the declared one.
        let set = set_with(&[method("Fine", policy(pb::RateClass::Sensitive, pb::Caller::Admin))]);
        let r = Registry::from_descriptor_set(&set).expect("registry builds");
        assert_eq!(
            r.get("/maru.v1.test.ProbeService/Fine").map(|m| m.policy),
            Some(Policy { rate_class: Some(RpcClass::Sensitive), caller: CallerRule::Admin, guests: false })
        );
    }

    #[test]
    fn prost_types_round_trip_loses_the_policies() {
        // Why the registry reads the set with prost-reflect: a prost-types decode and re-encode
        // drops the extension, and every method would lack its policy.
        let lossy = FileDescriptorSet::decode(super::super::FILE_DESCRIPTOR_SET).unwrap().encode_to_vec();
        let err = Registry::from_descriptor_set(&lossy).unwrap_err();
        assert!(matches!(&err, RegistryError::MissingPolicy(m) if m.len() > 80), "{err}");
    }

    #[test]
    fn caller_rules() {
        let user = Caller { user_id: Uuid::nil(), session_id: Uuid::nil(), role: Role::User };
        let admin = Caller { role: Role::Admin, ..user };
        let reason = |r: Result<(), AppError>| r.err().map(|e| (e.code(), e.reason()));
        use CallerRule::*;
        use tonic::Code;
        let expired = Auth::Rejected(Reason::TokenExpired);
        assert_eq!(reason(None.admit(&expired)), Option::None);
        assert_eq!(reason(None.admit(&Auth::Anonymous)), Option::None);
        assert_eq!(reason(AnonymousOk.admit(&Auth::Anonymous)), Option::None);
        assert_eq!(reason(AnonymousOk.admit(&expired)), Some((Code::Unauthenticated, Reason::TokenExpired)));
        assert_eq!(reason(Required.admit(&Auth::Anonymous)), Some((Code::Unauthenticated, Reason::TokenMissing)));
        assert_eq!(
            reason(Required.admit(&Auth::Rejected(Reason::TokenInvalid))),
            Some((Code::Unauthenticated, Reason::TokenInvalid))
        );
        assert_eq!(reason(Required.admit(&Auth::Caller(user))), Option::None);
        assert_eq!(reason(Admin.admit(&Auth::Anonymous)), Some((Code::Unauthenticated, Reason::TokenMissing)));
        assert_eq!(reason(Admin.admit(&Auth::Caller(user))), Some((Code::PermissionDenied, Reason::AdminRequired)));
        assert_eq!(reason(Admin.admit(&Auth::Caller(admin))), Option::None);
    }

    /// Every maru RPC of the compiled protos, judged for a guest: reads are admitted, every other
    /// RPC that looks at the token is refused with `GUEST_READ_ONLY` unless it declares
    /// `guests: true` (ConvertGuest only). Walks the registry, so a new RPC is covered at once.
    #[test]
    fn guests_may_only_read() {
        let r = Registry::from_descriptor_set(super::super::FILE_DESCRIPTOR_SET).expect("registry builds");
        let guest = Caller { user_id: Uuid::nil(), session_id: Uuid::nil(), role: Role::Guest };
        let user = Caller { role: Role::User, ..guest };
        let mut allowed_writes = Vec::new();
        let mut refused = 0;
        for (path, info) in r.methods() {
            let p = info.policy;
            let as_guest = p.admit(&Auth::Caller(guest)).err().map(|e| (e.code(), e.reason()));
            let as_user = p.admit(&Auth::Caller(user)).err().map(|e| (e.code(), e.reason()));
            if p.caller == CallerRule::Admin || p.caller == CallerRule::None {
                assert_eq!(as_guest, as_user, "{path}: a guest is judged as a user");
            } else if p.rate_class == Some(RpcClass::Read) {
                assert_eq!(as_guest, Option::None, "{path}: guests read");
            } else if p.guests {
                assert_eq!(as_guest, Option::None, "{path}");
                allowed_writes.push(path.as_str());
            } else {
                assert_eq!(as_guest, Some((tonic::Code::PermissionDenied, Reason::GuestReadOnly)), "{path}");
                assert_eq!(as_user, Option::None, "{path}: users are admitted");
                refused += 1;
            }
        }
        assert_eq!(allowed_writes, ["/maru.v1.AuthService/ConvertGuest"]);
        assert!(refused >= 80, "the write RPCs were walked: {refused}");
    }
}
