//! Canonical JSON: object keys sorted, no whitespace. Independent of serde_json's
//! `preserve_order` feature, which another crate in a build may switch on.

use serde_json::Value;

pub(crate) fn write(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<_> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            out.push('{');
            for (i, (k, v)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                write(v, out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write(v, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    #[test]
    fn keys_are_sorted_at_every_depth() {
        let mut out = String::new();
        super::write(&json!({"b": 1, "a": {"z": [1, {"y": 2, "x": 3}], "c": null}}), &mut out);
        assert_eq!(out, r#"{"a":{"c":null,"z":[1,{"x":3,"y":2}]},"b":1}"#);
    }
}
