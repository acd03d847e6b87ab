//! The text of extensions already written, per decoding thread, for one LangGraph
//! thread at a time.
//!
//! Why: a LangGraph checkpoint holds the whole state, so every checkpoint of a thread
//! holds every message of the conversation so far, each a pydantic extension. In the
//! benchmark's data 94 % of a thread's message bytes are messages an earlier checkpoint
//! of the same thread already held. Writing such a message's text again is the same
//! work for the same bytes: its text is kept here, and written again by copying it.
//!
//! Exact by construction: an extension's text depends only on its bytes, the style it
//! is read in and its depth (the nesting limit), and all of them are the key; the
//! bytes are compared, not only hashed. The notices its writing gave are replayed
//! with it. Only what the text path wrote itself is kept: an extension it left to the
//! tree path, or that failed, is not.
//!
//! Memory: the cache belongs to the OS thread that decodes (rayon's workers), holds one
//! LangGraph thread's extensions (a record of another thread empties it first) and at
//! most [`MAX_BYTES`]; past that it starts over.

use std::cell::RefCell;
use std::collections::HashMap;
use std::hash::Hasher;

use rustc_hash::{FxBuildHasher, FxHasher};

use crate::codec::python::Style;

/// Extension payloads shorter than this are written each time (datetimes, UUIDs):
/// looking them up costs about what writing them does.
pub(super) const MIN_PAYLOAD: usize = 64;

/// The most a decoding thread keeps: payloads and texts together.
const MAX_BYTES: usize = 4 << 20;

/// What identifies an extension's text, with its hash (made once: a miss looks it up,
/// then keeps it).
#[derive(Clone, Copy)]
pub(super) struct ExtKey<'a> {
    code: i8,
    style: Style,
    depth: usize,
    payload: &'a [u8],
    hash: u64,
}

/// How many payload bytes the hash reads at each end (the rest is compared on a hit).
const HASHED_END: usize = 48;

/// How many different payloads may share a hash; past that, one is written each time.
const MAX_BUCKET: usize = 4;

impl<'a> ExtKey<'a> {
    /// The key of the extension `code` with `payload`, read in `style` at `depth`.
    ///
    /// Its hash takes the payload's length and two ends only: hashing all of it was
    /// 1.7 % of a decoded export, and a hit compares all of it anyway. A message's ends
    /// differ from another's (its content starts it, its id ends it).
    pub fn new(code: i8, style: Style, depth: usize, payload: &'a [u8]) -> Self {
        let mut hasher = FxHasher::default();
        hasher.write_i8(code);
        hasher.write_u8(style as u8);
        hasher.write_usize(depth);
        hasher.write_usize(payload.len());
        let ends = payload.len().min(HASHED_END);
        hasher.write(&payload[..ends]);
        hasher.write(&payload[payload.len() - ends..]);
        Self {
            code,
            style,
            depth,
            payload,
            hash: hasher.finish(),
        }
    }
}

/// One extension's text, with what writing it noticed.
pub(super) struct Written {
    code: i8,
    style: Style,
    depth: usize,
    payload: Box<[u8]>,
    pub text: Box<[u8]>,
    pub notices: Box<[String]>,
    /// How many values inside it the tree path rendered (the tests count them).
    pub trees: usize,
}

impl Written {
    fn is(&self, key: &ExtKey<'_>) -> bool {
        self.code == key.code
            && self.style == key.style
            && self.depth == key.depth
            && *self.payload == *key.payload
    }
}

#[derive(Default)]
struct Cache {
    /// The LangGraph thread whose extensions these are.
    thread: String,
    /// By [`ExtKey::new`]'s hash; the rare equal hashes share a bucket.
    by_hash: HashMap<u64, Vec<Written>, FxBuildHasher>,
    bytes: usize,
}

impl Cache {
    fn clear(&mut self) {
        self.by_hash.clear();
        self.bytes = 0;
    }
}

thread_local! {
    static CACHE: RefCell<Cache> = RefCell::default();
}

/// Records of `thread` are decoded next on this OS thread: the extensions of another
/// LangGraph thread are let go.
pub fn enter_thread(thread: &str) {
    CACHE.with_borrow_mut(|cache| {
        if cache.thread != thread {
            cache.clear();
            thread.clone_into(&mut cache.thread);
        }
    });
}

/// Runs `found` on the text kept for `key`, if any; whether there was one.
pub(super) fn with_written(key: &ExtKey<'_>, found: impl FnOnce(&Written)) -> bool {
    CACHE.with_borrow(|cache| {
        let hit = cache
            .by_hash
            .get(&key.hash)
            .and_then(|bucket| bucket.iter().find(|w| w.is(key)));
        match hit {
            Some(written) => {
                found(written);
                true
            }
            None => false,
        }
    })
}

/// Keeps the text the text path wrote for `key`.
pub(super) fn keep(key: &ExtKey<'_>, text: &[u8], notices: &[String], trees: usize) {
    let size = key.payload.len() + text.len();
    if size > MAX_BYTES {
        return;
    }
    CACHE.with_borrow_mut(|cache| {
        if cache.bytes + size > MAX_BYTES {
            cache.clear();
        }
        let bucket = cache.by_hash.entry(key.hash).or_default();
        if bucket.len() == MAX_BUCKET {
            return;
        }
        cache.bytes += size;
        bucket.push(Written {
            code: key.code,
            style: key.style,
            depth: key.depth,
            payload: key.payload.into(),
            text: text.into(),
            notices: notices.into(),
            trees,
        });
    });
}
