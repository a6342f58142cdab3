//! Replacement values: the other types, strings from the dictionary or with control
//! characters, huge strings, numbers out of every range, and bytes no tree can hold.

use super::{emit::Value, tree::Node};
use crate::rng::Rng;

/// Longest huge string (1 MiB).
pub const MAX_HUGE_STRING: usize = 1 << 20;
/// Deepest nesting written (serde_json stops typed decoding at 128 levels; stork must rely on that).
pub const MAX_NESTING: usize = 100_000;

/// Numbers a decoder may mishandle: at and past the edges of i64, u64 and f64.
const NUMBERS: &[&str] = &[
    "0",
    "-1",
    "1",
    "1.5",
    "-0",
    "2147483648",
    "4294967296",
    "9007199254740993",
    "9223372036854775807",
    "-9223372036854775808",
    "18446744073709551615",
    "1e308",
    "5e-324",
    // Out of range: serde_json reads these as f64 (or rejects 1e999 as out of range).
    "18446744073709551616",
    "-9223372036854775809",
    "123456789012345678901234567890",
    "1e999",
    "-1e999",
    "1e-999",
];

/// Bytes that are not valid JSON (nor, mostly, YAML): invalid UTF-8, lone surrogates, raw
/// control characters in strings, malformed numbers and literals.
const INVALID: &[&[u8]] = &[
    b"\"\xff\xfe\"",
    b"\"\xc0\x80\"",
    b"\"\xed\xa0\x80\"",
    b"\"\xe2\x82\"",
    b"\xff",
    b"\"\\ud800\"",
    b"\"\\udc00x\"",
    b"\"\\ud800\\u0041\"",
    b"\"\\u00\"",
    b"\"\\x41\"",
    b"\"a\nb\"",
    b"\"\t\"",
    b"\"\0\"",
    b"01",
    b"1.",
    b".5",
    b"+1",
    b"NaN",
    b"Infinity",
    b"-",
    b"0x1f",
    b"1e",
    b"tru",
    b"nul",
    b"\"",
    b"{",
    b"[",
    b"}",
    b"",
    b"{\"a\":1,}",
    b"[1,]",
    b"{\"a\" 1}",
];

/// Strings with control characters, separators and non-ASCII text (valid JSON once escaped).
const ODD_STRINGS: &[&str] = &[
    "",
    " ",
    "\n",
    "a\nb",
    "\r\n",
    "\0",
    "\u{1b}[31mred\u{1b}[0m",
    "\t",
    "\u{7f}",
    "\u{202e}evil",
    "\u{feff}",
    "ñ",
    "日本",
    "😀",
    "a/b",
    "~1",
    "../../etc",
    "%s%n",
    "${x}",
    "default/data-1",
    "*",
    "-",
    "1Gi",
    "0",
    "-1Gi",
    "99999999999999999999Gi",
    "1e3",
    "NaN",
    "true",
    "null",
];

/// A value of any type: scalars, dictionary and odd strings, small containers, raw oddities.
pub fn random(rng: &mut Rng, dictionary: &[String]) -> Value {
    match rng.below(16) {
        0 => Value::Tree(Node::Null),
        1 => Value::Tree(Node::Bool(rng.one_in(2))),
        2 | 3 => Value::Raw(rng.pick(NUMBERS).as_bytes().to_vec()),
        4..=6 => Value::Tree(Node::Str(word(rng, dictionary))),
        7 => Value::Tree(Node::Str(odd_string(rng, dictionary))),
        8 => Value::Tree(Node::Arr(Vec::new())),
        9 => Value::Tree(Node::Arr((0..rng.log_size(8)).map(|_| Node::Str(word(rng, dictionary))).collect())),
        10 => Value::Tree(Node::Obj(Vec::new())),
        11 => Value::Tree(Node::Obj(vec![(word(rng, dictionary), Node::Str(word(rng, dictionary)))])),
        12 | 13 => Value::Raw(rng.pick(INVALID).to_vec()),
        // Large values are rare (one value in 256): each costs tens of kilobytes to write and
        // scan, and the nesting probes already put the deepest nesting everywhere.
        14 if !rng.one_in(16) => Value::Tree(Node::Str(word(rng, dictionary))),
        14 if rng.one_in(4) => Value::Tree(Node::Str(huge_string(rng))),
        14 => {
            let (depth, balanced) = (rng.log_size(MAX_NESTING), rng.one_in(2));
            Value::Raw(nesting(rng, depth, balanced))
        }
        _ => Value::Raw(raw_string(rng, dictionary)),
    }
}

/// A dictionary word (or an odd string when the dictionary is empty).
pub fn word(rng: &mut Rng, dictionary: &[String]) -> String {
    if dictionary.is_empty() || rng.one_in(8) {
        rng.pick(ODD_STRINGS).to_string()
    } else {
        rng.pick(dictionary).clone()
    }
}

/// A dictionary word with a control character, separator or odd text spliced in.
fn odd_string(rng: &mut Rng, dictionary: &[String]) -> String {
    let mut s = word(rng, dictionary);
    let at = (0..=s.len()).filter(|&i| s.is_char_boundary(i)).nth(rng.below(s.chars().count() + 1)).unwrap_or(0);
    let odd = ODD_STRINGS[rng.below(ODD_STRINGS.len())];
    s.insert_str(at, odd);
    s
}

/// A string of `1..=1 MiB` (log-uniform) repeating one character.
pub fn huge_string(rng: &mut Rng) -> String {
    let c = *rng.pick(&['a', '0', ' ', '\n', 'é', '"', '\\']);
    std::iter::repeat_n(c, rng.log_size(MAX_HUGE_STRING) / c.len_utf8()).collect()
}

/// `depth` levels of `[` (or `{"a":`), closed again when `balanced`.
pub fn nesting(rng: &mut Rng, depth: usize, balanced: bool) -> Vec<u8> {
    let map = rng.one_in(2);
    let (open, close): (&[u8], &[u8]) = if map { (b"{\"a\":", b"}") } else { (b"[", b"]") };
    let mut out = Vec::with_capacity(depth * (open.len() + close.len()) + 4);
    (0..depth).for_each(|_| out.extend_from_slice(open));
    out.extend_from_slice(if map { b"1" } else { b"" });
    if balanced {
        (0..depth).for_each(|_| out.extend_from_slice(close));
    }
    out
}

/// A quoted dictionary word with raw (unescaped) control characters or invalid UTF-8 inside.
fn raw_string(rng: &mut Rng, dictionary: &[String]) -> Vec<u8> {
    let mut out = vec![b'"'];
    out.extend_from_slice(word(rng, dictionary).as_bytes());
    const BAD: &[&[u8]] = &[b"\n", b"\r", b"\0", b"\x1b", b"\xff", b"\xc3", b"\xed\xbf\xbf", b"\\"];
    let bad = *rng.pick(BAD);
    let at = 1 + rng.below(out.len());
    out.splice(at..at, bad.iter().copied());
    out.push(b'"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nesting_is_as_deep_as_asked_and_balanced_on_request() {
        let mut rng = Rng::new(3);
        let deep = nesting(&mut rng, MAX_NESTING, true);
        let opens = deep.iter().filter(|&&b| b == b'[' || b == b'{').count();
        let closes = deep.iter().filter(|&&b| b == b']' || b == b'}').count();
        assert_eq!((opens, closes), (MAX_NESTING, MAX_NESTING));
        assert!(nesting(&mut rng, 10, false).iter().all(|&b| b != b']' && b != b'}'));
    }

    #[test]
    fn huge_strings_stay_within_a_mebibyte() {
        let mut rng = Rng::new(5);
        assert!((0..200).map(|_| huge_string(&mut rng).len()).all(|n| n <= MAX_HUGE_STRING));
    }
}
