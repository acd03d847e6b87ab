//! numpy arrays (msgpack extension type 6). LangGraph stores an `ndarray` as
//! `[dtype.str, shape, order, buffer]`: the dtype's text (`"<i4"`, `">f8"`, `"|b1"`,
//! `"<U3"`), the shape, `"C"` or `"F"`, and the raw element bytes. The view is what
//! `ndarray.tolist()` gives (the fixtures' `lgconv` rule 16b): nested lists of Python
//! scalars, whatever the byte and memory order.

use rmpv::Value as Mp;
use serde_json::Value;

use super::python;

/// The view of an array, or why it has none (the caller keeps the raw bytes then).
pub fn to_view(payload: &Mp) -> Result<Value, String> {
    let Mp::Array(parts) = payload else {
        return Err("payload is not an array".into());
    };
    let [
        Mp::String(dtype),
        Mp::Array(shape),
        Mp::String(order),
        Mp::Binary(buffer),
    ] = parts.as_slice()
    else {
        return Err("payload is not [dtype, shape, order, buffer]".into());
    };
    let dtype = Dtype::parse(dtype.as_str().ok_or("dtype is not text")?)?;
    let shape: Vec<usize> = shape
        .iter()
        .map(|d| d.as_u64().and_then(|d| usize::try_from(d).ok()))
        .collect::<Option<_>>()
        .ok_or("shape is not a list of sizes")?;
    let fortran = match order.as_str() {
        Some("C") => false,
        Some("F") => true,
        _ => return Err("order is neither C nor F".into()),
    };
    let count = shape.iter().try_fold(1usize, |n, d| n.checked_mul(*d));
    if count.and_then(|n| n.checked_mul(dtype.size)) != Some(buffer.len()) {
        return Err(format!(
            "{} bytes do not hold shape {shape:?} of {}-byte elements",
            buffer.len(),
            dtype.size
        ));
    }
    let element = |flat: usize| dtype.value(&buffer[flat * dtype.size..][..dtype.size]);
    // Strides in elements for the array's memory order.
    let mut strides = vec![0usize; shape.len()];
    let mut step = 1;
    let axes: Vec<usize> = if fortran {
        (0..shape.len()).collect()
    } else {
        (0..shape.len()).rev().collect()
    };
    for axis in axes {
        strides[axis] = step;
        step *= shape[axis];
    }
    nest(&shape, &strides, 0, &element)
}

fn nest(
    shape: &[usize],
    strides: &[usize],
    offset: usize,
    element: &dyn Fn(usize) -> Result<Value, String>,
) -> Result<Value, String> {
    match (shape.split_first(), strides.split_first()) {
        (Some((&len, rest)), Some((&stride, rest_strides))) => (0..len)
            .map(|i| nest(rest, rest_strides, offset + i * stride, element))
            .collect::<Result<Vec<_>, _>>()
            .map(Value::Array),
        // A 0-d array's `tolist()` is its one scalar.
        _ => element(offset),
    }
}

struct Dtype {
    big_endian: bool,
    kind: char,
    size: usize,
}

impl Dtype {
    fn parse(text: &str) -> Result<Self, String> {
        let mut chars = text.chars();
        let big_endian = match chars.next() {
            Some('>') => true,
            Some('<' | '|' | '=') => false,
            _ => return Err(format!("dtype {text:?} has no byte order")),
        };
        let kind = chars.next().ok_or_else(|| format!("dtype {text:?}"))?;
        let size: usize = chars
            .as_str()
            .parse()
            .map_err(|_| format!("dtype {text:?} has no size"))?;
        let per_element = match (kind, size) {
            ('b', 1) | ('i' | 'u', 1 | 2 | 4 | 8) | ('f', 4 | 8) => size,
            // Fixed-width text: `size` UTF-32 code units; bytes: `size` bytes.
            ('U', n) => n * 4,
            ('S', n) => n,
            _ => return Err(format!("dtype {text:?} has no view rule")),
        };
        Ok(Self {
            big_endian,
            kind,
            size: per_element,
        })
    }

    fn value(&self, bytes: &[u8]) -> Result<Value, String> {
        let mut word = [0u8; 8];
        let fixed = |word: &mut [u8; 8]| {
            let n = bytes.len().min(8);
            if self.big_endian {
                word[8 - n..].copy_from_slice(&bytes[..n]);
                u64::from_be_bytes(*word)
            } else {
                word[..n].copy_from_slice(&bytes[..n]);
                u64::from_le_bytes(*word)
            }
        };
        Ok(match (self.kind, self.size) {
            ('b', _) => Value::Bool(bytes[0] != 0),
            ('u', _) => Value::from(fixed(&mut word)),
            ('i', n) => {
                // Sign-extend from n bytes.
                let shift = 64 - 8 * n as u32;
                Value::from(((fixed(&mut word) << shift) as i64) >> shift)
            }
            ('f', 4) => python::float_view(f64::from(f32::from_bits(fixed(&mut word) as u32))),
            ('f', _) => python::float_view(f64::from_bits(fixed(&mut word))),
            ('U', _) => {
                let text: String = bytes
                    .chunks_exact(4)
                    .map(|c| {
                        let unit = [c[0], c[1], c[2], c[3]];
                        let code = if self.big_endian {
                            u32::from_be_bytes(unit)
                        } else {
                            u32::from_le_bytes(unit)
                        };
                        char::from_u32(code).ok_or_else(|| format!("U+{code:X} is not a character"))
                    })
                    .collect::<Result<_, _>>()?;
                // numpy pads with NULs and `tolist()` strips them.
                Value::String(text.trim_end_matches('\0').to_owned())
            }
            _ => {
                let end = bytes.iter().rposition(|b| *b != 0).map_or(0, |i| i + 1);
                python::bytes_view(&bytes[..end])
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn array(dtype: &str, shape: &[u64], order: &str, buffer: Vec<u8>) -> Mp {
        Mp::Array(vec![
            dtype.into(),
            Mp::Array(shape.iter().map(|d| Mp::from(*d)).collect()),
            order.into(),
            Mp::Binary(buffer),
        ])
    }

    #[test]
    fn arrays_become_what_tolist_gives() {
        let i32s: Vec<u8> = (0..6i32).flat_map(i32::to_le_bytes).collect();
        assert_eq!(
            to_view(&array("<i4", &[2, 3], "C", i32s.clone())).unwrap(),
            serde_json::json!([[0, 1, 2], [3, 4, 5]])
        );
        // The same memory in Fortran order is the transpose's layout.
        assert_eq!(
            to_view(&array("<i4", &[2, 3], "F", i32s)).unwrap(),
            serde_json::json!([[0, 2, 4], [1, 3, 5]])
        );
        assert_eq!(
            to_view(&array(">i2", &[2], "C", vec![0, 1, 0xff, 0xfe])).unwrap(),
            serde_json::json!([1, -2])
        );
        let f64s: Vec<u8> = [0.5f64, -0.0, f64::NAN]
            .iter()
            .flat_map(|f| f.to_le_bytes())
            .collect();
        let floats = to_view(&array("<f8", &[3], "C", f64s)).unwrap();
        assert_eq!(floats[0], 0.5);
        assert!(floats[1].as_f64().unwrap().is_sign_negative());
        assert_eq!(floats[2], serde_json::json!({"__float__": "NaN"}));
        assert_eq!(
            to_view(&array("|b1", &[2], "C", vec![1, 0])).unwrap(),
            serde_json::json!([true, false])
        );
        let text: Vec<u8> = ['a', '\0', 'ü', '😀']
            .iter()
            .flat_map(|c| (*c as u32).to_le_bytes())
            .collect();
        assert_eq!(
            to_view(&array("<U2", &[2], "C", text)).unwrap(),
            serde_json::json!(["a", "ü😀"])
        );
        assert_eq!(
            to_view(&array("<f8", &[0, 3], "C", vec![])).unwrap(),
            serde_json::json!([])
        );
        assert_eq!(
            to_view(&array("<i8", &[], "C", 7i64.to_le_bytes().to_vec())).unwrap(),
            7
        );
    }

    #[test]
    fn what_has_no_rule_says_why() {
        assert!(
            to_view(&array("<c16", &[1], "C", vec![0; 16]))
                .unwrap_err()
                .contains("<c16")
        );
        assert!(
            to_view(&array("<i4", &[2], "C", vec![0; 4]))
                .unwrap_err()
                .contains("do not hold")
        );
    }
}
