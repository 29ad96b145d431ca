//! Python's text forms of template values, so minijinja prints what jinja2 would: `str()` and
//! `repr()` (the output formatter and the `string` filter) and `json.dumps` (Hugging Face's
//! `tojson` filter). It owns no template logic; `template.rs` wires these into the environment.

use std::fmt::Write as _;

use minijinja::value::{Kwargs, ValueKind};
use minijinja::{Error, ErrorKind, Output, State, Value};

/// The output formatter: `{{ x }}` prints `str(x)` as Python would (lists and dicts as their
/// `repr`, floats in Python's shortest form); everything else goes to minijinja's default,
/// which already prints `True`/`False`/`None` and honours the undefined behaviour.
pub(crate) fn formatter(out: &mut Output, state: &State, value: &Value) -> Result<(), Error> {
    match value.kind() {
        ValueKind::Seq | ValueKind::Map => out.write_str(&py_str(value)?).map_err(Error::from),
        ValueKind::Number if !value.is_integer() => out.write_str(&py_str(value)?).map_err(Error::from),
        _ => minijinja::escape_formatter(out, state, value),
    }
}

/// The `string` filter: Python's `str(value)`.
pub(crate) fn string(value: &Value) -> Result<Value, Error> {
    if value.kind() == ValueKind::String {
        return Ok(value.clone());
    }
    Ok(Value::from(py_str(value)?))
}

/// Hugging Face's `tojson`: `json.dumps(x, ensure_ascii=False, indent=None, separators=None,
/// sort_keys=False)`, accepting the same arguments positionally or by keyword (`sort_keys` by
/// keyword only). Unlike jinja2's own `tojson` it does not HTML-escape.
pub(crate) fn tojson(
    value: &Value,
    ensure_ascii: Option<Value>,
    indent: Option<Value>,
    separators: Option<Value>,
    kwargs: Kwargs,
) -> Result<Value, Error> {
    let ensure_ascii = kwargs.get::<Option<Value>>("ensure_ascii")?.or(ensure_ascii);
    let indent = kwargs.get::<Option<Value>>("indent")?.or(indent);
    let separators = kwargs.get::<Option<Value>>("separators")?.or(separators);
    let sort_keys = kwargs.get::<Option<Value>>("sort_keys")?;
    kwargs.assert_all_used()?;

    let indent = match indent {
        None => None,
        Some(v) if v.is_none() || v.is_undefined() => None,
        Some(v) => Some(match v.as_str() {
            Some(s) => s.to_owned(),
            None => {
                let n = v
                    .as_i64()
                    .ok_or_else(|| Error::new(ErrorKind::InvalidOperation, "tojson: indent must be int or str"))?;
                " ".repeat(usize::try_from(n).unwrap_or(0))
            }
        }),
    };
    let (item_sep, key_sep) = match separators {
        Some(v) if !v.is_none() && !v.is_undefined() => {
            let pair: Vec<Value> = v.try_iter()?.collect();
            match pair.as_slice() {
                [a, b] if a.as_str().is_some() && b.as_str().is_some() => (a.to_string(), b.to_string()),
                _ => {
                    return Err(Error::new(ErrorKind::InvalidOperation, "tojson: separators must be a pair of strings"))
                }
            }
        }
        // json.dumps: (', ', ': ') without indent, (',', ': ') with it.
        _ if indent.is_some() => (",".to_owned(), ": ".to_owned()),
        _ => (", ".to_owned(), ": ".to_owned()),
    };
    let style = JsonStyle {
        ensure_ascii: ensure_ascii.is_some_and(|v| v.is_true()),
        indent,
        item_sep,
        key_sep,
        sort_keys: sort_keys.is_some_and(|v| v.is_true()),
    };
    let mut out = String::new();
    style.dump(value, 0, &mut out)?;
    Ok(Value::from(out))
}

/// How `json.dumps` was asked to lay out its output.
struct JsonStyle {
    ensure_ascii: bool,
    indent: Option<String>,
    item_sep: String,
    key_sep: String,
    sort_keys: bool,
}

impl JsonStyle {
    fn dump(&self, value: &Value, depth: usize, out: &mut String) -> Result<(), Error> {
        match value.kind() {
            ValueKind::None => out.push_str("null"),
            ValueKind::Bool => out.push_str(if value.is_true() { "true" } else { "false" }),
            ValueKind::Number => out.push_str(&json_number(value)?),
            ValueKind::String => json_string(&value.to_string(), self.ensure_ascii, out),
            ValueKind::Seq | ValueKind::Iterable => {
                let items: Vec<Value> = value.try_iter()?.collect();
                self.container(out, depth, ('[', ']'), &items, |item, depth, out| self.dump(item, depth, out))?;
            }
            ValueKind::Map => {
                let mut keys: Vec<Value> = value.try_iter()?.collect();
                if self.sort_keys {
                    keys.sort();
                }
                self.container(out, depth, ('{', '}'), &keys, |key, depth, out| {
                    json_string(&json_key(key)?, self.ensure_ascii, out);
                    out.push_str(&self.key_sep);
                    self.dump(&value.get_item(key)?, depth, out)
                })?;
            }
            ValueKind::Undefined => return Err(not_serializable("Undefined")),
            kind => return Err(not_serializable(&kind.to_string())),
        }
        Ok(())
    }

    fn container(
        &self,
        out: &mut String,
        depth: usize,
        (open, close): (char, char),
        items: &[Value],
        mut each: impl FnMut(&Value, usize, &mut String) -> Result<(), Error>,
    ) -> Result<(), Error> {
        out.push(open);
        if items.is_empty() {
            out.push(close);
            return Ok(());
        }
        let newline = |out: &mut String, level: usize| {
            if let Some(indent) = &self.indent {
                out.push('\n');
                for _ in 0..level {
                    out.push_str(indent);
                }
            }
        };
        for (i, item) in items.iter().enumerate() {
            if i > 0 {
                out.push_str(&self.item_sep);
            }
            newline(out, depth + 1);
            each(item, depth + 1, out)?;
        }
        newline(out, depth);
        out.push(close);
        Ok(())
    }
}

fn not_serializable(kind: &str) -> Error {
    Error::new(ErrorKind::InvalidOperation, format!("Object of type {kind} is not JSON serializable"))
}

/// `json.dumps` turns `int`, `float`, `bool` and `None` keys into strings and rejects the rest.
fn json_key(key: &Value) -> Result<String, Error> {
    match key.kind() {
        ValueKind::String => Ok(key.to_string()),
        ValueKind::None => Ok("null".to_owned()),
        ValueKind::Bool => Ok(if key.is_true() { "true" } else { "false" }.to_owned()),
        ValueKind::Number => json_number(key),
        kind => Err(Error::new(
            ErrorKind::InvalidOperation,
            format!("keys must be str, int, float, bool or None, not {kind}"),
        )),
    }
}

fn json_number(value: &Value) -> Result<String, Error> {
    if value.is_integer() {
        return Ok(value.to_string());
    }
    let f = f64::try_from(value.clone())?;
    Ok(if f.is_nan() {
        "NaN".to_owned()
    } else if f.is_infinite() {
        if f < 0.0 { "-Infinity" } else { "Infinity" }.to_owned()
    } else {
        py_float(f)
    })
}

/// A JSON string literal as Python's `json` module writes it.
fn json_string(s: &str, ensure_ascii: bool, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if c < ' ' => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c if ensure_ascii && !(' '..='~').contains(&c) => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    let _ = write!(out, "\\u{unit:04x}");
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Python's `repr(float)` for a finite value: the shortest round-tripping digits, positional
/// between 1e-4 and 1e16 (always with a `.`), scientific outside (`1e+16`, `1.5e-05`).
pub(crate) fn py_float(f: f64) -> String {
    if f.is_nan() {
        return "nan".to_owned();
    }
    if f.is_infinite() {
        return if f < 0.0 { "-inf" } else { "inf" }.to_owned();
    }
    let sci = format!("{f:e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((sci.as_str(), "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if f != 0.0 && !(-4..16).contains(&exp) {
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{mantissa}e{sign}{:02}", exp.abs())
    } else {
        let mut s = f.to_string();
        if !s.contains('.') {
            s.push_str(".0");
        }
        s
    }
}

/// Python's `str(value)`.
fn py_str(value: &Value) -> Result<String, Error> {
    match value.kind() {
        ValueKind::String => Ok(value.to_string()),
        _ => {
            let mut out = String::new();
            py_repr(value, &mut out)?;
            Ok(out)
        }
    }
}

/// Python's `repr(value)` for the values a chat template sees.
fn py_repr(value: &Value, out: &mut String) -> Result<(), Error> {
    match value.kind() {
        ValueKind::String => py_repr_str(&value.to_string(), out),
        ValueKind::Number if !value.is_integer() => {
            out.push_str(&py_float(f64::try_from(value.clone())?));
        }
        ValueKind::Seq => {
            out.push('[');
            for (i, item) in value.try_iter()?.enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                py_repr(&item, out)?;
            }
            out.push(']');
        }
        ValueKind::Map => {
            out.push('{');
            for (i, key) in value.try_iter()?.enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                py_repr(&key, out)?;
                out.push_str(": ");
                py_repr(&value.get_item(&key)?, out)?;
            }
            out.push('}');
        }
        // None, True/False, ints and the rest print as minijinja prints them.
        _ => {
            let _ = write!(out, "{value}");
        }
    }
    Ok(())
}

/// `repr(str)`: single quotes unless the text has `'` and no `"`; escapes for backslash, the
/// quote, control characters and (approximately, without Unicode tables) non-printables.
fn py_repr_str(s: &str, out: &mut String) {
    let quote = if s.contains('\'') && !s.contains('"') { '"' } else { '\'' };
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if is_printable(c) => out.push(c),
            c if (c as u32) <= 0xff => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if (c as u32) <= 0xffff => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => {
                let _ = write!(out, "\\U{:08x}", c as u32);
            }
        }
    }
    out.push(quote);
}

/// An approximation of `str.isprintable` for one character: control characters, separators other
/// than the ASCII space, common format characters and private-use code points are not printable.
fn is_printable(c: char) -> bool {
    !matches!(c,
        '\u{0}'..='\u{1f}' | '\u{7f}'..='\u{a0}' | '\u{ad}' | '\u{1680}'
        | '\u{2000}'..='\u{200f}' | '\u{2028}'..='\u{202f}' | '\u{205f}'..='\u{2064}'
        | '\u{3000}' | '\u{feff}' | '\u{e000}'..='\u{f8ff}'
        | '\u{f0000}'..='\u{10ffff}')
}

#[cfg(test)]
mod tests {
    use super::*;
    use minijinja::Environment;

    /// Renders `template` with `x` bound to the JSON value `x`, through this module's filters and
    /// formatter. Expected strings were produced by CPython 3.11 (`json.dumps`, `str`).
    fn check(template: &str, x: serde_json::Value, expected: &str) {
        let mut env = Environment::new();
        env.set_formatter(formatter);
        env.add_filter("tojson", tojson);
        env.add_filter("string", string);
        let got = env
            .render_str(template, minijinja::context! { x => Value::from_serialize(&x) })
            .unwrap_or_else(|e| panic!("{template}: {e}"));
        assert_eq!(got, expected, "{template} with {x}");
    }

    #[test]
    fn tojson_matches_json_dumps() {
        use serde_json::json;
        let doc = json!({"b": 1, "a": [true, null, 2.5, "é\"\n\u{1}"], "c": {}, "d": []});
        check("{{ x | tojson }}", doc.clone(), r#"{"b": 1, "a": [true, null, 2.5, "é\"\n\u0001"], "c": {}, "d": []}"#);
        check(
            "{{ x | tojson(indent=2) }}",
            doc.clone(),
            "{\n  \"b\": 1,\n  \"a\": [\n    true,\n    null,\n    2.5,\n    \"é\\\"\\n\\u0001\"\n  ],\n  \"c\": {},\n  \"d\": []\n}",
        );
        check(
            "{{ x | tojson(sort_keys=true, separators=(',', ':')) }}",
            doc.clone(),
            r#"{"a":[true,null,2.5,"é\"\n\u0001"],"b":1,"c":{},"d":[]}"#,
        );
        check("{{ x | tojson(ensure_ascii=true) }}", json!("é😀<&>'"), r#""\u00e9\ud83d\ude00<&>'""#);
        check("{{ x | tojson }}", json!("<b>&'"), r#""<b>&'""#);
        check("{{ x | tojson(indent='\t') }}", json!([1]), "[\n\t1\n]");
        check("{{ x | tojson(indent=0) }}", json!([1, 2]), "[\n1,\n2\n]");
        check("{{ x | tojson }}", json!(1e16), "1e+16");
        check("{{ x | tojson }}", json!(-0.0001), "-0.0001");
        check("{{ x | tojson }}", json!(0.00001), "1e-05");
        check("{{ x | tojson }}", json!(u64::MAX), "18446744073709551615");
        check("{{ {1: 'a', none: 'b'} | tojson }}", json!(null), r#"{"1": "a", "null": "b"}"#);
    }

    #[test]
    fn printing_matches_python_str() {
        use serde_json::json;
        check("{{ x }}", json!({"a": [1, "it's", "q\"", null, true]}), r#"{'a': [1, "it's", 'q"', None, True]}"#);
        check("{{ x }}", json!(["a\nb", "both'\""]), r#"['a\nb', 'both\'"']"#);
        check("{{ x }}", json!(1.0), "1.0");
        check("{{ x }}", json!(1e100), "1e+100");
        check("{{ x }}", json!(null), "None");
        check("{{ x | string }}", json!([1.5, "\u{7f}\u{a0}\u{200b}é"]), r"[1.5, '\x7f\xa0\u200bé']");
        check("{{ x | string }}", json!("plain"), "plain");
        check("{{ x ~ '' }}{{ y }}", json!(false), "False");
    }

    #[test]
    fn tojson_rejects_what_python_rejects() {
        let env = {
            let mut env = Environment::new();
            env.add_filter("tojson", tojson);
            env
        };
        for (template, needle) in [
            ("{{ missing | tojson }}", "Undefined is not JSON serializable"),
            ("{{ 1 | tojson(indent=[1]) }}", "indent must be int or str"),
            ("{{ 1 | tojson(separators=',') }}", "separators must be a pair"),
            ("{{ 1 | tojson(bogus=1) }}", "bogus"),
        ] {
            let err = env.render_str(template, ()).expect_err(template);
            assert!(err.to_string().contains(needle), "{template}: {err}");
        }
    }
}
