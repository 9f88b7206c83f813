//! The checks of every setting value, shared by all three layers.
//!
//! Each `parse_*` function is both a clap value parser (so a bad flag is
//! named by clap: `invalid value '0' for '--batch-size <N>': must be at least
//! 1`) and, through the [`de`] functions, the serde check of the same value
//! when it comes from the pipeline file or a `PULSEWIRE_*` variable (so the
//! error names that key and source instead). A value is judged alike
//! wherever it was written.

use std::net::SocketAddr;

/// The `KEY=VALUE` pairs of one `--kafka-property`, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Properties(pub Vec<(String, String)>);

impl serde::Serialize for Properties {
    /// As written: `parse_properties` of the text gives the same pairs back.
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let text: Vec<String> = self.0.iter().map(|(k, v)| format!("{k}={v}")).collect();
        serializer.serialize_str(&text.join(","))
    }
}

/// clap parser: a comma-separated list of `host:port`.
pub fn parse_bootstrap(value: &str) -> Result<String, String> {
    let value = value.trim();
    if value.is_empty() {
        return Err("must list at least one host:port".into());
    }
    for server in value.split(',') {
        let server = server.trim();
        let (host, port) = server
            .rsplit_once(':')
            .ok_or_else(|| format!("`{server}` is not host:port"))?;
        if host.is_empty() || port.parse::<u16>().map_or(true, |p| p == 0) {
            return Err(format!("`{server}` is not host:port"));
        }
    }
    Ok(value.to_string())
}

/// clap parser: `KEY=VALUE`.
pub fn parse_property(value: &str) -> Result<(String, String), String> {
    match value.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
        _ => Err(format!("`{value}` is not KEY=VALUE")),
    }
}

/// clap parser: `KEY=VALUE[,KEY=VALUE...]`, where a comma followed by
/// something that is not `KEY=` belongs to the value before it
/// (`debug=eos,broker,linger.ms=5` is two properties).
pub fn parse_properties(value: &str) -> Result<Properties, String> {
    fn starts_property(segment: &str) -> bool {
        segment.split_once('=').is_some_and(|(key, _)| {
            let key = key.trim();
            !key.is_empty()
                && key
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        })
    }
    let mut items: Vec<String> = Vec::new();
    for segment in value.split(',') {
        match items.last_mut() {
            Some(last) if !starts_property(segment) => {
                last.push(',');
                last.push_str(segment);
            }
            _ => items.push(segment.to_string()),
        }
    }
    items
        .iter()
        .map(|item| parse_property(item))
        .collect::<Result<_, _>>()
        .map(Properties)
}

/// clap parser: a socket address such as `127.0.0.1:9301` or `[::1]:9301`.
pub fn parse_socket_addr(value: &str) -> Result<SocketAddr, String> {
    value
        .parse()
        .map_err(|_| format!("`{value}` is not an IP:port socket address"))
}

/// clap parser: a count that must be at least 1 (batch sizes, windows).
pub fn parse_positive(value: &str) -> Result<usize, String> {
    match value.trim().parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(_) => Err(format!("`{value}` is not a whole number")),
    }
}

/// clap parser: milliseconds, at least 1.
pub fn parse_millis(value: &str) -> Result<u64, String> {
    match value.trim().parse::<u64>() {
        Ok(0) => Err("must be at least 1 (milliseconds)".into()),
        Ok(n) => Ok(n),
        Err(_) => Err(format!("`{value}` is not a whole number of milliseconds")),
    }
}

/// clap parser: a non-empty name (topics, group ids, transactional ids).
pub fn parse_name(value: &str) -> Result<String, String> {
    let value = value.trim();
    if value.is_empty() {
        Err("must not be empty".into())
    } else {
        Ok(value.to_string())
    }
}

/// The longest instance name: with a prefix it stays a readable
/// transactional.id and systemd unit name.
pub const MAX_INSTANCE_LEN: usize = 64;

/// clap parser: an instance name, 1 to [`MAX_INSTANCE_LEN`] of ASCII letters,
/// digits, `.`, `_` and `-`: safe in a transactional.id, a unit name and a log
/// line alike.
pub fn parse_instance(value: &str) -> Result<String, String> {
    let safe = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    if value.is_empty() {
        Err("must not be empty".into())
    } else if value.len() > MAX_INSTANCE_LEN {
        Err(format!("must be at most {MAX_INSTANCE_LEN} characters"))
    } else if let Some(bad) = value.chars().find(|&c| !safe(c)) {
        Err(format!(
            "`{value}` has {bad:?}: only letters, digits, `.`, `_` and `-` are allowed"
        ))
    } else {
        Ok(value.to_string())
    }
}

/// clap parser: an http(s) URL with a host (the InfluxDB client would panic
/// on less); a trailing `/` is dropped.
pub fn parse_url(value: &str) -> Result<String, String> {
    let rest = value
        .strip_prefix("http://")
        .or_else(|| value.strip_prefix("https://"))
        .ok_or_else(|| format!("`{value}` must start with http:// or https://"))?;
    let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if host.is_empty() || host.contains(char::is_whitespace) {
        return Err(format!("`{value}` has no host"));
    }
    Ok(value.trim_end_matches('/').to_string())
}

/// serde `deserialize_with` functions running the parsers above, for values
/// from the pipeline file and the environment. A variable's value is always
/// text and a file's may be a number, so each takes any scalar as its text.
pub mod de {
    use std::fmt;
    use std::net::SocketAddr;

    use serde::de::{Deserializer, Error, SeqAccess, Visitor};

    use super::Properties;

    /// Any scalar as text: `20000`, `"20000"` and `1.5` all reach the parser.
    struct Text;

    impl<'de> Visitor<'de> for Text {
        type Value = String;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a string or a number")
        }
        fn visit_str<E: Error>(self, v: &str) -> Result<String, E> {
            Ok(v.to_string())
        }
        fn visit_u64<E: Error>(self, v: u64) -> Result<String, E> {
            Ok(v.to_string())
        }
        fn visit_i64<E: Error>(self, v: i64) -> Result<String, E> {
            Ok(v.to_string())
        }
        fn visit_f64<E: Error>(self, v: f64) -> Result<String, E> {
            Ok(v.to_string())
        }
    }

    /// Runs `parse` over the value as text; its error becomes serde's, which
    /// figment completes with the key and the source.
    pub fn checked<'de, D, T>(d: D, parse: fn(&str) -> Result<T, String>) -> Result<T, D::Error>
    where
        D: Deserializer<'de>,
    {
        parse(&d.deserialize_any(Text)?).map_err(D::Error::custom)
    }

    /// One `deserialize_with` function per parser above.
    macro_rules! checks {
        ($($name:ident -> $t:ty = $parse:ident;)*) => {$(
            pub fn $name<'de, D: Deserializer<'de>>(d: D) -> Result<$t, D::Error> {
                checked(d, super::$parse)
            }
        )*};
    }

    checks! {
        name -> String = parse_name;
        positive -> usize = parse_positive;
        millis -> u64 = parse_millis;
        socket_addr -> SocketAddr = parse_socket_addr;
        bootstrap -> String = parse_bootstrap;
        url -> String = parse_url;
        instance -> String = parse_instance;
    }

    /// An optional [`instance`]: absent stays `None`.
    pub fn optional_instance<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
        instance(d).map(Some)
    }

    /// `PULSEWIRE_KAFKA_PROPERTIES` is one text; repeated flags are a list.
    pub fn properties<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Properties>, D::Error> {
        struct List;
        impl<'de> Visitor<'de> for List {
            type Value = Vec<Properties>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("KEY=VALUE[,KEY=VALUE...], or a list of them")
            }
            fn visit_str<E: Error>(self, v: &str) -> Result<Self::Value, E> {
                super::parse_properties(v)
                    .map(|p| vec![p])
                    .map_err(E::custom)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut all = Vec::new();
                while let Some(text) = seq.next_element::<String>()? {
                    all.push(super::parse_properties(&text).map_err(A::Error::custom)?);
                }
                Ok(all)
            }
        }
        d.deserialize_any(List)
    }
}
