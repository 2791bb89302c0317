//! Random messages of any input type, from the descriptor alone: strings with NUL and
//! control characters, megabyte strings, Korean and emoji, UUID-ish and garbage ids,
//! negative and huge numbers, unknown enum values, nested messages, long repeated fields,
//! field masks naming real and invented fields, timestamps out of range. Known values of the
//! running server (ids, handles, trial ids) are mixed in so some cases reach deep code. And
//! mutated encodings of such messages: bit flips, truncation, random bytes.

use std::collections::HashMap;

use prost::Message;
use prost_reflect::{DynamicMessage, FieldDescriptor, Kind, MapKey, MessageDescriptor, Value};
use rand::rngs::StdRng;
use rand::{Rng, RngCore};

/// Values of the server under test worth hitting (ids that exist, handles, trial ids).
#[derive(Debug, Clone, Default)]
pub struct Known {
    pub strings: Vec<String>,
}

/// One generator, seeded per case.
pub struct Gen<'a> {
    pub rng: StdRng,
    known: &'a Known,
    /// Bytes of strings left for this message (keeps it under `grpc.max_message_bytes`
    /// most of the time; sometimes it is deliberately over).
    budget: usize,
}

const MAX_DEPTH: usize = 4;

impl<'a> Gen<'a> {
    pub fn new(rng: StdRng, known: &'a Known) -> Self {
        Self { rng, known, budget: 3 << 20 }
    }

    fn chance(&mut self, p: f64) -> bool {
        self.rng.random_bool(p)
    }

    fn pick<'b, T>(&mut self, items: &'b [T]) -> &'b T {
        &items[self.rng.random_range(0..items.len())]
    }

    /// A random message of type `desc`.
    pub fn message(&mut self, desc: &MessageDescriptor) -> DynamicMessage {
        self.message_at(desc, 0)
    }

    fn message_at(&mut self, desc: &MessageDescriptor, depth: usize) -> DynamicMessage {
        let mut msg = DynamicMessage::new(desc.clone());
        match desc.full_name() {
            "google.protobuf.Timestamp" => return self.timestamp(desc),
            "google.protobuf.Duration" => return self.timestamp(desc),
            _ => {}
        }
        for field in desc.fields() {
            // Most fields set, some left at their default.
            if !self.chance(0.7) {
                continue;
            }
            if let Some(v) = self.field(desc, &field, depth) {
                msg.set_field(&field, v);
            }
        }
        msg
    }

    fn field(&mut self, parent: &MessageDescriptor, field: &FieldDescriptor, depth: usize) -> Option<Value> {
        if field.is_map() {
            let Kind::Message(entry) = field.kind() else { return None };
            let (kf, vf) = (entry.map_entry_key_field(), entry.map_entry_value_field());
            let mut map = HashMap::new();
            for _ in 0..self.rng.random_range(0..4) {
                let key = match self.single(&entry, &kf, depth + 1)? {
                    Value::Bool(b) => MapKey::Bool(b),
                    Value::I32(n) => MapKey::I32(n),
                    Value::I64(n) => MapKey::I64(n),
                    Value::U32(n) => MapKey::U32(n),
                    Value::U64(n) => MapKey::U64(n),
                    Value::String(s) => MapKey::String(s),
                    _ => continue,
                };
                if let Some(v) = self.single(&entry, &vf, depth + 1) {
                    map.insert(key, v);
                }
            }
            return Some(Value::Map(map));
        }
        if field.is_list() {
            let n = match self.rng.random_range(0..20) {
                0 => self.rng.random_range(20..300),
                1..=4 => 0,
                _ => self.rng.random_range(1..4),
            };
            let mut items = Vec::new();
            for _ in 0..n {
                items.extend(self.single(parent, field, depth + 1));
            }
            return Some(Value::List(items));
        }
        self.single(parent, field, depth)
    }

    fn single(&mut self, parent: &MessageDescriptor, field: &FieldDescriptor, depth: usize) -> Option<Value> {
        Some(match field.kind() {
            Kind::String => Value::String(self.string()),
            Kind::Bytes => Value::Bytes(self.string().into_bytes().into()),
            Kind::Bool => Value::Bool(self.rng.random()),
            Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => Value::I32(self.i64() as i32),
            Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => Value::I64(self.i64()),
            Kind::Uint32 | Kind::Fixed32 => Value::U32(self.i64() as u32),
            Kind::Uint64 | Kind::Fixed64 => Value::U64(self.i64() as u64),
            Kind::Double => Value::F64(self.f64()),
            Kind::Float => Value::F32(self.f64() as f32),
            Kind::Enum(e) => {
                let known: Vec<i32> = e.values().map(|v| v.number()).collect();
                Value::EnumNumber(if self.chance(0.8) {
                    *self.pick(&known)
                } else {
                    *self.pick(&[-1, 99, 12345, i32::MAX, i32::MIN])
                })
            }
            Kind::Message(m) if m.full_name() == "google.protobuf.FieldMask" => {
                Value::Message(self.field_mask(&m, parent))
            }
            Kind::Message(m) => {
                if depth >= MAX_DEPTH {
                    return None;
                }
                Value::Message(self.message_at(&m, depth + 1))
            }
        })
    }

    fn i64(&mut self) -> i64 {
        match self.rng.random_range(0..4) {
            0 => *self.pick(&[0, 1, -1, 2, 5, 20, 99, 100, 101, 1000, 36_500, 36_501, 1 << 31, -(1 << 31)]),
            1 => *self.pick(&[i64::MIN, i64::MAX, i32::MIN as i64, i32::MAX as i64, u32::MAX as i64, -100]),
            2 => self.rng.random_range(-1000..100_000),
            _ => self.rng.random(),
        }
    }

    fn f64(&mut self) -> f64 {
        match self.rng.random_range(0..3) {
            0 => *self.pick(&[
                0.0,
                -0.0,
                f64::NAN,
                f64::INFINITY,
                f64::NEG_INFINITY,
                f64::MAX,
                f64::MIN,
                f64::MIN_POSITIVE,
                f64::EPSILON,
                90.0,
                90.000001,
                -90.0,
                180.0,
                180.5,
                -181.0,
            ]),
            1 => *self.pick(&[37.5665, 126.9780, 37.5683, 35.1796, 129.0756]),
            _ => self.rng.random_range(-1e6..1e6),
        }
    }

    /// A `Timestamp` or `Duration` (same shape): in range, at the edges, or far out of it.
    fn timestamp(&mut self, desc: &MessageDescriptor) -> DynamicMessage {
        let mut msg = DynamicMessage::new(desc.clone());
        let now = 1_795_000_000i64;
        let seconds = match self.rng.random_range(0..4) {
            0 => now + self.rng.random_range(-100_000_000..100_000_000),
            1 => *self.pick(&[0, -1, -62_135_596_800, -62_135_596_801, 253_402_300_799, 253_402_300_800]),
            2 => *self.pick(&[i64::MIN, i64::MAX, -315_576_000_001, 315_576_000_001]),
            _ => self.rng.random(),
        };
        let nanos = *self.pick(&[0, 1, 999_999_999, 1_000_000_000, -1, i32::MAX, i32::MIN]);
        if let Some(f) = desc.get_field_by_name("seconds") {
            msg.set_field(&f, Value::I64(seconds));
        }
        if let Some(f) = desc.get_field_by_name("nanos") {
            msg.set_field(&f, Value::I32(nanos));
        }
        msg
    }

    /// Paths that name fields of `parent` (the message holding the mask) mixed with
    /// invented, nested, empty and huge ones.
    fn field_mask(&mut self, desc: &MessageDescriptor, parent: &MessageDescriptor) -> DynamicMessage {
        let mut msg = DynamicMessage::new(desc.clone());
        let names: Vec<String> = parent.fields().map(|f| f.name().to_owned()).collect();
        let mut paths = Vec::new();
        for _ in 0..self.rng.random_range(0..6) {
            let p = match self.rng.random_range(0..6) {
                0..=2 if !names.is_empty() => self.pick(&names).clone(),
                3 => format!("{}.{}", self.string(), self.string()),
                4 => self.pick(&["*", "", " ", "update_mask", "id", "etag", "a.b.c", "BIO"]).to_string(),
                _ => self.string(),
            };
            paths.push(Value::String(p));
        }
        if let Some(f) = desc.get_field_by_name("paths") {
            msg.set_field(&f, Value::List(paths));
        }
        msg
    }

    /// A string from one of many families.
    pub fn string(&mut self) -> String {
        let s = match self.rng.random_range(0..24) {
            0 | 1 => String::new(),
            2..=4 if !self.known.strings.is_empty() => self.pick(&self.known.strings).clone(),
            5 => format!("{}\0", self.pick(&["a", "테스트", "C100001", "user"])),
            // A real value (an id, a handle) with a NUL inside: passes the cheap checks
            // (required, length) and would reach PostgreSQL if a field helper missed it.
            22 | 23 if !self.known.strings.is_empty() => {
                let mut s = self.pick(&self.known.strings).clone();
                let boundaries: Vec<usize> = (0..=s.len()).filter(|i| s.is_char_boundary(*i)).collect();
                let at = *self.pick(&boundaries);
                s.insert(at, '\0');
                s
            }
            6 => format!("a\0b{}", char::from(self.rng.random_range(1u8..32))),
            7 => (0..self.rng.random_range(1..20)).map(|_| char::from(self.rng.random_range(0u8..32))).collect(),
            8 => self
                .pick(&[
                    "판교동 맛집",
                    "신갈",
                    "가",
                    "용인신갈푸르지오",
                    "😀🎉",
                    "\u{202e}abc",
                    "e\u{301}",
                    "\u{feff}",
                    "\u{fffd}",
                ])
                .to_string(),
            9 => uuid::Builder::from_random_bytes(self.rng.random()).into_uuid().to_string(),
            10 => self
                .pick(&[
                    "00000000-0000-0000-0000-000000000000",
                    "ffffffff-ffff-ffff-ffff-ffffffffffff",
                    "01a23557-b4cb-7766-affd-16097c6270a5",
                    "not-a-uuid",
                    "{01a23557-b4cb-7766-affd-16097c6270a5}",
                    "01A23557B4CB7766AFFD16097C6270A5",
                ])
                .to_string(),
            11 => self.pick(&["-1", "0", "1e309", "NaN", "9223372036854775808", "0x10", "１２３"]).to_string(),
            12 => self
                .pick(&["' or 1=1 --", "%", "_", "\\", "%%__\\\\", "${x}", "<script>", "../../etc/passwd", "a'b\"c"])
                .to_string(),
            13 => " \t\n\r ".to_owned(),
            14 => self
                .pick(&[
                    "user_1",
                    "a@b.c",
                    "https://x.example/a.png",
                    "http://127.0.0.1:1/",
                    "javascript:alert(1)",
                    "2026-12-02T00:00:00Z",
                    "9999-12-31T23:59:59Z",
                    "req-1",
                    "COMMUNITY_KIND_CLUB",
                    "#태그",
                    "tag with space",
                ])
                .to_string(),
            15 => {
                let n = self.rng.random_range(65..400);
                (0..n).map(|_| char::from(self.rng.random_range(b'a'..=b'z'))).collect()
            }
            16 => {
                let n = self.rng.random_range(1000..10_000).min(self.budget / 4);
                "가".repeat(n)
            }
            17 if self.budget > (1 << 20) && self.chance(0.03) => {
                self.budget -= 1 << 20;
                "x".repeat(1 << 20)
            }
            18 => {
                let mut bytes = vec![0u8; self.rng.random_range(1..40)];
                self.rng.fill_bytes(&mut bytes);
                String::from_utf8_lossy(&bytes).into_owned()
            }
            19 => (0..self.rng.random_range(1..30))
                .filter_map(|_| char::from_u32(self.rng.random_range(0..0x11_0000)))
                .collect(),
            _ => {
                let n = self.rng.random_range(1..16);
                (0..n).map(|_| char::from(self.rng.random_range(b' '..=b'~'))).collect()
            }
        };
        self.budget = self.budget.saturating_sub(s.len());
        s
    }

    /// The encoding of a random message of type `desc`, mutated.
    pub fn mutated(&mut self, desc: &MessageDescriptor) -> Vec<u8> {
        let mut bytes = self.message(desc).encode_to_vec();
        for _ in 0..self.rng.random_range(1..4) {
            match self.rng.random_range(0..8) {
                0 if !bytes.is_empty() => {
                    let i = self.rng.random_range(0..bytes.len());
                    bytes[i] ^= 1 << self.rng.random_range(0..8);
                }
                1 if !bytes.is_empty() => {
                    let at = self.rng.random_range(0..bytes.len());
                    bytes.truncate(at);
                }
                2 => {
                    let at = self.rng.random_range(0..=bytes.len());
                    let mut junk = vec![0u8; self.rng.random_range(1..16)];
                    self.rng.fill_bytes(&mut junk);
                    bytes.splice(at..at, junk);
                }
                3 => {
                    let mut junk = vec![0u8; self.rng.random_range(0..200)];
                    self.rng.fill_bytes(&mut junk);
                    bytes = junk;
                }
                4 => {
                    // An unknown field (valid wire format).
                    bytes.extend_from_slice(&[0xf8, 0x3e, 0x01]);
                }
                5 => {
                    // Field 1 again with another wire type (fixed64).
                    bytes.extend_from_slice(&[0x09, 1, 2, 3, 4, 5, 6, 7, 8]);
                }
                6 => {
                    // A length that runs past the end.
                    bytes.extend_from_slice(&[0x12, 0xff, 0xff, 0xff, 0x0f, b'a']);
                }
                _ => {
                    let copy = bytes.clone();
                    bytes.extend_from_slice(&copy);
                }
            }
        }
        bytes
    }
}
