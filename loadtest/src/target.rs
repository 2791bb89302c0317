//! Where load may go: loopback addresses only (127.0.0.0/8, ::1, `localhost`). Every URL the
//! runner is given — gRPC targets, the database it checks, the pgbench and Redis servers it
//! measures — passes through here first.

use std::net::IpAddr;

use anyhow::{Context, bail};
use url::{Host, Url};

/// Parses `raw` and refuses anything that is not a loopback address.
pub fn loopback(what: &str, raw: &str) -> anyhow::Result<Url> {
    let url = Url::parse(raw).with_context(|| format!("{what}: not a URL: {raw}"))?;
    let ok = match url.host() {
        Some(Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        // Non-http schemes (postgres://, redis://) leave the host unparsed.
        Some(Host::Domain(d)) => match d.trim_matches(['[', ']']).parse::<IpAddr>() {
            Ok(ip) => ip.is_loopback(),
            Err(_) => d.eq_ignore_ascii_case("localhost"),
        },
        None => false,
    };
    if !ok {
        bail!("{what}: {raw} is not a loopback address; maru-load only targets 127.0.0.0/8, [::1] or localhost");
    }
    // libpq-style URLs can redirect the connection with `?host=`; refuse rather than follow.
    if url.query_pairs().any(|(k, _)| k == "host" || k == "hostaddr") {
        bail!("{what}: {raw} sets host in its query; give the loopback host in the authority instead");
    }
    Ok(url)
}

/// `scheme://host:port` of a gRPC target, as tonic and reqwest want it.
pub fn origin(url: &Url) -> String {
    url.origin().ascii_serialization()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_addresses_pass() {
        for ok in ["http://127.0.0.1:50051", "http://127.9.9.9:1", "http://[::1]:50051", "http://localhost:50051"] {
            assert!(loopback("t", ok).is_ok(), "{ok}");
        }
        assert!(loopback("db", "postgres://postgres@127.0.0.1:5432/maru").is_ok());
        assert!(loopback("redis", "redis://[::1]:6379").is_ok());
    }

    #[test]
    fn anything_else_is_refused() {
        for bad in [
            "http://10.0.0.1:50051",
            "http://192.168.1.2:50051",
            "http://example.com:50051",
            "http://[2001:db8::1]:50051",
            "postgres://postgres@127.0.0.1/maru?host=10.0.0.1",
            "postgres://postgres@10.1.2.3:5432/maru",
            "redis://192.168.0.1:6379",
            "not a url",
        ] {
            assert!(loopback("t", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn origin_drops_the_path() {
        let u = loopback("t", "http://127.0.0.1:50051/").unwrap();
        assert_eq!(origin(&u), "http://127.0.0.1:50051");
    }
}
