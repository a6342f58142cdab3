//! Byte-level havoc, blind to structure: bit flips, random and "interesting" bytes, inserted
//! JSON and YAML tokens, deleted, duplicated and swapped ranges and lines, truncation, and
//! splices of two inputs.

use crate::rng::Rng;

/// Bytes that change a JSON or YAML parser's state.
const BYTES: &[u8] = b"\0\xff\x7f\"\\{}[]:,\n\r\t -#&*!|>%@`'?~";

/// Tokens of JSON and YAML, and a small alias expansion.
const TOKENS: &[&[u8]] = &[
    b"null",
    b"true",
    b"\"\"",
    b"{}",
    b"[]",
    b"\\u0000",
    b"\\ud800",
    b"\\\"",
    b"1e999",
    b"-0",
    b",",
    b":",
    b"---\n",
    b"...\n",
    b"&a ",
    b"*a",
    b"<<: *a\n",
    b"!!binary ",
    b"!!str ",
    b"!!int ",
    b"!!map ",
    b"!custom ",
    b"? ",
    b"|\n",
    b">-\n",
    b"%YAML 1.2\n",
    b"%TAG ! tag:x,2000:\n",
    b"\xef\xbb\xbf",
    b"#",
    b"~",
    b".inf",
    b".nan",
    b"0o17",
    b"0x1F",
    b"2001-12-14t21:59:43.10-05:00",
    b"- ",
    b": ",
    b"  ",
    b"\t",
    b"a: &x [1,2,3,4,5,6,7,8,9,10]\nb: &y [*x,*x,*x,*x,*x,*x,*x,*x,*x,*x]\nc: &z [*y,*y,*y,*y,*y,*y,*y,*y,*y,*y]\n",
];

/// Applies `rounds` random byte operations to `buf`; `other` is a second input to splice from.
pub fn havoc(rng: &mut Rng, buf: &mut Vec<u8>, other: &[u8], rounds: usize) {
    for _ in 0..rounds {
        let len = buf.len();
        let at = if len == 0 { 0 } else { rng.below(len) };
        match rng.below(13) {
            0 if len > 0 => buf[at] ^= 1 << rng.below(8),
            1 if len > 0 => buf[at] = *rng.pick(BYTES),
            2 if len > 0 => buf[at] = rng.next_u64() as u8,
            3 => {
                let n = rng.log_size(8);
                let bytes: Vec<u8> = (0..n).map(|_| *rng.pick(BYTES)).collect();
                buf.splice(at..at, bytes);
            }
            4 | 5 => {
                let token = rng.pick(TOKENS);
                buf.splice(at..at, token.iter().copied());
            }
            6 if len > 0 => {
                let n = rng.log_size(64.max(len / 4)).min(len - at);
                buf.drain(at..at + n);
            }
            7 if len > 0 => {
                let n = rng.log_size(64.max(len / 4)).min(len - at);
                let chunk = buf[at..at + n].to_vec();
                let to = rng.below(len + 1);
                buf.splice(to..to, chunk);
            }
            8 => buf.truncate(at),
            9 if !other.is_empty() => {
                let from = rng.below(other.len());
                buf.truncate(at);
                buf.extend_from_slice(&other[from..]);
            }
            10 | 11 => lines(rng, buf),
            _ => digits(rng, buf),
        }
    }
}

/// A line duplicated, deleted, swapped with the next one, or re-indented.
fn lines(rng: &mut Rng, buf: &mut Vec<u8>) {
    let starts: Vec<usize> =
        std::iter::once(0).chain(buf.iter().enumerate().filter(|(_, b)| **b == b'\n').map(|(i, _)| i + 1)).collect();
    let i = rng.below(starts.len());
    let (start, end) = (starts[i], starts.get(i + 1).copied().unwrap_or(buf.len()));
    match rng.below(4) {
        0 => {
            let line = buf[start..end].to_vec();
            buf.splice(start..start, line);
        }
        1 => {
            buf.drain(start..end);
        }
        2 if i + 2 < starts.len() => {
            let next_end = starts.get(i + 2).copied().unwrap_or(buf.len());
            buf[start..next_end].rotate_left(end - start);
        }
        _ => {
            if rng.one_in(2) {
                buf.splice(start..start, std::iter::repeat_n(b' ', 1 + rng.below(4)));
            } else if buf.get(start) == Some(&b' ') {
                buf.remove(start);
            }
        }
    }
}

/// A number in the text replaced by an edge value.
fn digits(rng: &mut Rng, buf: &mut Vec<u8>) {
    const EDGES: &[&[u8]] = &[
        b"0",
        b"-1",
        b"255",
        b"256",
        b"65536",
        b"4294967296",
        b"18446744073709551616",
        b"99999999999999999999999999999999999999",
    ];
    let skip = rng.below(buf.len() + 1);
    let Some(from) = buf[skip..].iter().position(u8::is_ascii_digit).map(|p| skip + p) else { return };
    let end = buf[from..].iter().position(|b| !b.is_ascii_digit()).map_or(buf.len(), |p| from + p);
    buf.splice(from..end, rng.pick(EDGES).iter().copied());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn havoc_never_panics_on_empty_or_tiny_inputs() {
        let mut rng = Rng::new(11);
        for len in 0..4 {
            for _ in 0..2_000 {
                let mut buf = vec![b'1'; len];
                havoc(&mut rng, &mut buf, b"{\"a\":1}\nb: 2\n", 4);
            }
        }
    }
}
