//! Just enough of Python's pickle format to take apart a pending write that a saver
//! pickled as a whole `(task, channel, value)` tuple, without running Python.
//!
//! plainredis serializes each write as one tuple; when msgpack cannot hold the value,
//! `JsonPlusSerializer(pickle_fallback=True)` pickles the whole tuple. Every other
//! store keeps a write's value alone, so the value's opcodes are cut out of the
//! stream and wrapped as a pickle of their own: the opcodes are carried as they are
//! (never re-encoded, nothing is executed or guessed). Only framing is redone and memo
//! references are renumbered, which is what pickling the value alone produces.
//!
//! The walk knows every opcode of protocols 0–5 by its argument's length and its
//! effect on the stack, so it can prove that the value is exactly one object between
//! the two strings and the closing `TUPLE3`.

use std::ops::Range;

#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum PickleError {
    #[error("pickle ends inside the opcode at byte {0}")]
    Truncated(usize),
    #[error("unknown pickle opcode 0x{code:02x} at byte {at}")]
    UnknownOpcode { code: u8, at: usize },
    #[error("not a (task, channel, value) tuple: {0}")]
    Shape(&'static str),
}

/// A write tuple taken apart: the value is a complete pickle of its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteTuple {
    pub task: String,
    pub channel: String,
    pub value: Vec<u8>,
}

const PROTO: u8 = 0x80;
const FRAME: u8 = 0x95;
const STOP: u8 = b'.';
const MEMOIZE: u8 = 0x94;
const TUPLE3: u8 = 0x87;
const SHORT_BINUNICODE: u8 = 0x8c;
const BINUNICODE: u8 = b'X';
const BINUNICODE8: u8 = 0x8d;
const BINGET: u8 = b'h';
const LONG_BINGET: u8 = b'j';
const GET: u8 = b'g';
const BINPUT: u8 = b'q';
const LONG_BINPUT: u8 = b'r';
const PUT: u8 = b'p';
/// The frame size `pickle` aims at (`_FRAME_SIZE_TARGET`), and the least data it
/// frames (`_FRAME_SIZE_MIN`).
const FRAME_TARGET: usize = 64 * 1024;
const FRAME_MIN: usize = 4;

/// How an opcode's argument is laid out after the opcode byte.
enum Arg {
    Fixed(usize),
    /// A little-endian length of this many bytes, then that many bytes.
    Counted(usize),
    /// Text up to and including a newline (`lines` of them).
    Lines(usize),
}

/// What an opcode does to the stack.
enum Effect {
    /// Pops and pushes a fixed number of items (net change).
    Net(i64),
    /// Pushes a mark.
    Mark,
    /// Pops down to the last mark, then pushes this many items.
    PopMark(i64),
}

fn opcode(code: u8) -> Option<(Arg, Effect)> {
    use Arg::*;
    use Effect::*;
    Some(match code {
        // Marks and stack handling.
        b'(' => (Fixed(0), Mark),
        b'.' => (Fixed(0), Net(0)),
        b'0' => (Fixed(0), Net(-1)),
        b'1' => (Fixed(0), PopMark(0)),
        b'2' => (Fixed(0), Net(1)),
        // Constants and scalars.
        b'N' | 0x88 | 0x89 => (Fixed(0), Net(1)),
        b'K' => (Fixed(1), Net(1)),
        b'M' => (Fixed(2), Net(1)),
        b'J' => (Fixed(4), Net(1)),
        b'G' => (Fixed(8), Net(1)),
        b'I' | b'L' | b'F' | b'S' | b'V' | b'P' => (Lines(1), Net(1)),
        0x8a | b'U' | b'C' | 0x8c => (Counted(1), Net(1)),
        0x8b | b'T' | b'B' | b'X' => (Counted(4), Net(1)),
        0x8d | 0x8e | 0x96 => (Counted(8), Net(1)),
        // Containers.
        b']' | b')' | b'}' | 0x8f => (Fixed(0), Net(1)),
        b'a' | b'b' | b'R' | 0x81 | 0x93 | 0x86 => (Fixed(0), Net(-1)),
        b's' | 0x92 | 0x87 => (Fixed(0), Net(-2)),
        0x85 => (Fixed(0), Net(0)),
        b'e' | b'u' | 0x90 => (Fixed(0), PopMark(0)),
        b't' | b'l' | b'd' | 0x91 | b'o' => (Fixed(0), PopMark(1)),
        b'i' => (Lines(2), PopMark(1)),
        b'c' => (Lines(2), Net(1)),
        0x82 => (Fixed(1), Net(1)),
        0x83 => (Fixed(2), Net(1)),
        0x84 => (Fixed(4), Net(1)),
        // Memo.
        b'h' => (Fixed(1), Net(1)),
        b'j' => (Fixed(4), Net(1)),
        b'g' => (Lines(1), Net(1)),
        b'q' => (Fixed(1), Net(0)),
        b'r' => (Fixed(4), Net(0)),
        b'p' => (Lines(1), Net(0)),
        0x94 => (Fixed(0), Net(0)),
        // Protocol, framing, out-of-band data, persistent ids.
        0x80 => (Fixed(1), Net(0)),
        0x95 => (Fixed(8), Net(0)),
        0x97 => (Fixed(0), Net(1)),
        0x98 | b'Q' => (Fixed(0), Net(0)),
        _ => return None,
    })
}

/// One opcode: its byte, where it starts, where its argument is, where it ends.
struct Op {
    code: u8,
    at: usize,
    arg: Range<usize>,
}

impl Op {
    fn end(&self) -> usize {
        self.arg.end
    }
}

/// The opcodes up to and including `STOP`.
fn opcodes(bytes: &[u8]) -> Result<Vec<(Op, Effect)>, PickleError> {
    let mut ops = Vec::new();
    let mut at = 0;
    loop {
        let code = *bytes.get(at).ok_or(PickleError::Truncated(at))?;
        let (arg, effect) = opcode(code).ok_or(PickleError::UnknownOpcode { code, at })?;
        let start = at + 1;
        let arg = match arg {
            Arg::Fixed(n) => start..start + n,
            Arg::Counted(width) => {
                let len = bytes
                    .get(start..start + width)
                    .ok_or(PickleError::Truncated(at))?;
                let mut le = [0u8; 8];
                le[..width].copy_from_slice(len);
                let len = usize::try_from(u64::from_le_bytes(le))
                    .map_err(|_| PickleError::Truncated(at))?;
                start + width..(start + width).saturating_add(len)
            }
            Arg::Lines(n) => {
                let mut end = start;
                for _ in 0..n {
                    let newline = bytes
                        .get(end..)
                        .and_then(|rest| rest.iter().position(|&b| b == b'\n'))
                        .ok_or(PickleError::Truncated(at))?;
                    end += newline + 1;
                }
                start..end
            }
        };
        if arg.end > bytes.len() {
            return Err(PickleError::Truncated(at));
        }
        at = arg.end;
        ops.push((
            Op {
                code,
                at: start - 1,
                arg,
            },
            effect,
        ));
        if code == STOP {
            return Ok(ops);
        }
    }
}

fn is_memo_store(code: u8) -> bool {
    matches!(code, MEMOIZE | BINPUT | LONG_BINPUT | PUT)
}

fn text_of(op: &Op, bytes: &[u8]) -> Option<String> {
    matches!(op.code, SHORT_BINUNICODE | BINUNICODE | BINUNICODE8)
        .then(|| String::from_utf8(bytes[op.arg.clone()].to_vec()).ok())
        .flatten()
}

fn memo_index(op: &Op, bytes: &[u8]) -> Option<u64> {
    let arg = &bytes[op.arg.clone()];
    match op.code {
        BINGET | BINPUT => Some(u64::from(arg[0])),
        LONG_BINGET | LONG_BINPUT => Some(u64::from(u32::from_le_bytes(arg.try_into().ok()?))),
        GET | PUT => std::str::from_utf8(arg).ok()?.trim_end().parse().ok(),
        _ => None,
    }
}

/// Splits a pickled `(task, channel, value)` tuple. The value comes back as a pickle
/// that `pickle.loads` reads as the same object as the tuple's third item.
pub fn split_write_tuple(bytes: &[u8]) -> Result<WriteTuple, PickleError> {
    let ops = opcodes(bytes)?;
    let mut i = 0;
    let mut proto = None;
    while let Some((op, _)) = ops.get(i)
        && matches!(op.code, PROTO | FRAME)
    {
        if op.code == PROTO {
            proto = Some(bytes[op.arg.start]);
        }
        i += 1;
    }
    // The task and the channel: two strings, each maybe memoized.
    let mut memo_before = Vec::new();
    let mut implicit_memo = 0u64;
    let mut strings = Vec::new();
    for _ in 0..2 {
        let (op, _) = ops.get(i).ok_or(PickleError::Shape("too short"))?;
        strings.push(
            text_of(op, bytes).ok_or(PickleError::Shape("task and channel must be strings"))?,
        );
        i += 1;
        while let Some((op, _)) = ops.get(i)
            && is_memo_store(op.code)
        {
            match op.code {
                MEMOIZE => {
                    memo_before.push(implicit_memo);
                    implicit_memo += 1;
                }
                _ => memo_before
                    .push(memo_index(op, bytes).ok_or(PickleError::Shape("bad memo index"))?),
            }
            i += 1;
        }
    }
    let value_start = i;
    // The value: every opcode up to the TUPLE3 that closes the tuple, with the two
    // strings below it on the stack the whole time.
    let mut marks: Vec<i64> = vec![2];
    let mut value_end = None;
    for (j, (op, effect)) in ops.iter().enumerate().skip(value_start) {
        if op.code == TUPLE3 && marks.len() == 1 && marks[0] == 3 {
            value_end = Some(j);
            break;
        }
        match effect {
            Effect::Net(n) => {
                let level = marks.last_mut().expect("one level");
                *level += n;
                if *level < 0 {
                    return Err(PickleError::Shape("an opcode pops through a mark"));
                }
            }
            Effect::Mark => marks.push(0),
            Effect::PopMark(push) => {
                if marks.len() < 2 {
                    return Err(PickleError::Shape(
                        "a mark is popped that the value did not push",
                    ));
                }
                marks.pop();
                *marks.last_mut().expect("one level") += push;
            }
        }
        if marks[0] < 2 || op.code == STOP {
            return Err(PickleError::Shape("the value is not one object"));
        }
    }
    let value_end = value_end.ok_or(PickleError::Shape("no closing TUPLE3"))?;
    // After the tuple: its memo entry, then STOP.
    let tail = &ops[value_end + 1..];
    if !tail
        .iter()
        .all(|(op, _)| is_memo_store(op.code) || op.code == STOP)
    {
        return Err(PickleError::Shape("more follows the tuple"));
    }

    let value_ops = &ops[value_start..value_end];
    let value_memoizes = value_ops.iter().any(|(op, _)| op.code == MEMOIZE);
    let value_puts = value_ops
        .iter()
        .any(|(op, _)| matches!(op.code, BINPUT | LONG_BINPUT | PUT));
    let before_memoized = implicit_memo > 0;
    let before_put = memo_before.len() as u64 > implicit_memo;
    if (value_memoizes && before_put) || (value_puts && before_memoized) {
        return Err(PickleError::Shape("memo styles are mixed"));
    }
    // Implicit memo indices count from zero in the value's own pickle.
    let shift = if value_memoizes { implicit_memo } else { 0 };
    let mut body = Vec::with_capacity(bytes.len());
    for (op, _) in value_ops {
        match op.code {
            FRAME => {}
            BINGET | LONG_BINGET | GET => {
                let index = memo_index(op, bytes).ok_or(PickleError::Shape("bad memo index"))?;
                if memo_before.contains(&index) {
                    return Err(PickleError::Shape(
                        "the value refers to the task or channel",
                    ));
                }
                let index = index - shift;
                match op.code {
                    BINGET => body.extend([BINGET, index as u8]),
                    LONG_BINGET => {
                        body.push(LONG_BINGET);
                        body.extend((index as u32).to_le_bytes());
                    }
                    _ => body.extend(format!("g{index}\n").into_bytes()),
                }
            }
            _ => body.extend_from_slice(&bytes[op.at..op.end()]),
        }
    }
    body.push(STOP);

    let mut value = Vec::with_capacity(body.len() + 11);
    if let Some(proto) = proto {
        value.extend([PROTO, proto]);
        // Protocol 4 and later frame the data; one frame when it fits, as `pickle` does.
        if proto >= 4 && (FRAME_MIN..FRAME_TARGET).contains(&body.len()) {
            value.push(FRAME);
            value.extend((body.len() as u64).to_le_bytes());
        }
    }
    value.extend(body);
    let channel = strings.pop().expect("two strings");
    let task = strings.pop().expect("two strings");
    Ok(WriteTuple {
        task,
        channel,
        value,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MARK: u8 = b'(';

    fn frame(proto: u8, body: &[u8]) -> Vec<u8> {
        let mut out = vec![PROTO, proto, FRAME];
        out.extend((body.len() as u64).to_le_bytes());
        out.extend_from_slice(body);
        out
    }

    fn short_str(s: &str) -> Vec<u8> {
        let mut out = vec![SHORT_BINUNICODE, s.len() as u8];
        out.extend(s.as_bytes());
        out
    }

    /// `pickle.dumps(("t1", "ch", {"k": [1, 2]}), protocol=4)` built by hand.
    fn tuple_with_dict() -> Vec<u8> {
        let mut body = Vec::new();
        body.extend(short_str("t1"));
        body.push(MEMOIZE);
        body.extend(short_str("ch"));
        body.push(MEMOIZE);
        body.extend([b'}', MEMOIZE]);
        body.extend(short_str("k"));
        body.push(MEMOIZE);
        body.extend([b']', MEMOIZE, MARK, b'K', 1, b'K', 2, b'e', b's']);
        // The dict is referred to again, as a repeated object would be.
        body.extend([BINGET, 2, b'0']);
        body.extend([TUPLE3, MEMOIZE, STOP]);
        frame(4, &body)
    }

    #[test]
    fn the_value_becomes_its_own_pickle_with_memo_renumbered() {
        let split = split_write_tuple(&tuple_with_dict()).unwrap();
        assert_eq!((split.task.as_str(), split.channel.as_str()), ("t1", "ch"));
        let mut body = vec![b'}', MEMOIZE];
        body.extend(short_str("k"));
        body.push(MEMOIZE);
        body.extend([b']', MEMOIZE, MARK, b'K', 1, b'K', 2, b'e', b's']);
        body.extend([BINGET, 0, b'0', STOP]);
        assert_eq!(split.value, frame(4, &body));
    }

    #[test]
    fn protocol_2_puts_keep_their_indices() {
        let mut p = vec![PROTO, 2, BINUNICODE, 1, 0, 0, 0, b't', BINPUT, 0];
        p.extend([BINUNICODE, 1, 0, 0, 0, b'c', BINPUT, 1]);
        p.extend([b']', BINPUT, 2, b'N', b'a', TUPLE3, BINPUT, 3, STOP]);
        let split = split_write_tuple(&p).unwrap();
        assert_eq!(
            split.value,
            vec![PROTO, 2, b']', BINPUT, 2, b'N', b'a', STOP]
        );
    }

    #[test]
    fn a_value_that_refers_to_the_task_string_is_refused() {
        let mut body = short_str("t1");
        body.push(MEMOIZE);
        body.extend(short_str("ch"));
        body.extend([MEMOIZE, BINGET, 0, TUPLE3, MEMOIZE, STOP]);
        let e = split_write_tuple(&frame(4, &body)).unwrap_err();
        assert!(e.to_string().contains("refers to the task"), "{e}");
    }

    #[test]
    fn shapes_that_are_not_a_write_tuple_are_refused() {
        // A pair, not a triple.
        let mut body = short_str("t1");
        body.extend(short_str("ch"));
        body.extend([0x86, STOP]);
        assert!(split_write_tuple(&frame(4, &body)).is_err());
        // Two values after the strings.
        let mut body = short_str("t1");
        body.extend(short_str("ch"));
        body.extend([b'N', b'N', TUPLE3, STOP]);
        assert!(split_write_tuple(&frame(4, &body)).is_err());
        // A task that is not a string.
        let body = [b'K', 1, b'N', b'N', TUPLE3, STOP];
        assert!(split_write_tuple(&frame(4, &body)).is_err());
        // Cut short, and an opcode no protocol has.
        let whole = tuple_with_dict();
        assert_eq!(
            split_write_tuple(&whole[..whole.len() - 1]),
            Err(PickleError::Truncated(whole.len() - 1))
        );
        let mut body = short_str("t1");
        body.extend(short_str("ch"));
        body.extend([0xff, TUPLE3, STOP]);
        assert!(matches!(
            split_write_tuple(&frame(4, &body)),
            Err(PickleError::UnknownOpcode { code: 0xff, .. })
        ));
    }
}
