//! Names on the hot path: what SPEC 2.5 says of a member or category name, worked out
//! once per name and remembered in a small per-thread cache.
//!
//! Normalising and classifying a name costs a few microseconds; a site's sensors send
//! the same few hundred names over and over. Each thread keeps its own cache (no lock),
//! tied to the agreement it was filled for (its address and SHA-256) and emptied when
//! the agreement changes or the cache outgrows [`LIMIT`] names.

use std::cell::RefCell;
use std::collections::HashMap;

use crate::agreement::names;
use crate::agreement::taxonomy::{CategoryId, Class};
use crate::agreement::{Agreement, PurposeSet, Selector};
use crate::event::Malformed;

type Map<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// The most names a thread remembers before it starts again.
const LIMIT: usize = 4096;

/// What SPEC 2.5 and 2.2 say of one member name.
#[derive(Clone, Copy, Debug)]
struct Member {
    /// The index of its normal form in `Cache::forms`.
    form: u32,
    /// The hash of its normal form ([`names::normal_hash`]): equal for duplicates.
    hash: u64,
    /// Holds a control character or a default-ignorable code point.
    refused: bool,
    /// The purposes a member of this name may reach (the taxonomy and its exceptions).
    allowed: PurposeSet,
}

/// What steps 3 and 4 say of an event's category name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CategoryVerdict {
    /// The category for metric labels: the strictest it reveals, else its own name if known.
    pub label: Option<CategoryId>,
    pub class: Class,
    /// With `Class::Special`: the purposes every special category it reveals allows.
    pub allowed: PurposeSet,
}

#[derive(Default)]
struct Cache {
    /// The agreement the answers are for: its address and the start of its SHA-256.
    agreement: Option<(usize, [u8; 16])>,
    /// Room to normalise ASCII names without allocating.
    scratch: Vec<u8>,
    members: Map<Box<str>, Member>,
    normal: Map<Box<str>, u32>,
    /// Source and category names in normal form.
    texts: Map<Box<str>, Box<str>>,
    /// The interned normal forms, by id.
    forms: Vec<Box<str>>,
    categories: Map<Box<str>, CategoryVerdict>,
    /// The purposes a member name may reach, by the hash a tape read it with and the
    /// name as sent: found without hashing the name again.
    allowed: hashbrown::HashTable<(u64, Box<str>, PurposeSet)>,
    /// Names that reveal no category, kept apart (they reach every purpose).
    plain: Plain,
}

/// How many names [`Plain`] holds, and the longest it holds, in bytes.
const PLAIN_SLOTS: usize = 512;
const PLAIN_BYTES: usize = 31;

/// Member names known to reveal no category (ASCII, and none of the taxonomy's terms
/// can be found in them): a fixed table where each name sits in the slot its hash
/// picks, in place of the one before. A map keyed by time or by id sends names that
/// come once: here they only take a slot, where in the maps above they would fill
/// them, to be emptied with everything else, every few hundred events. Nothing here
/// grows or allocates; it is emptied only with the maps above ([`begin`]), never for
/// the names it holds.
struct Plain {
    slots: Vec<PlainSlot>,
}

#[derive(Clone, Copy)]
struct PlainSlot {
    hash: u64,
    /// `u8::MAX`: empty.
    len: u8,
    bytes: [u8; PLAIN_BYTES],
}

const EMPTY_SLOT: PlainSlot = PlainSlot { hash: 0, len: u8::MAX, bytes: [0; PLAIN_BYTES] };

impl Default for Plain {
    fn default() -> Plain {
        Plain { slots: vec![EMPTY_SLOT; PLAIN_SLOTS] }
    }
}

impl Plain {
    /// The slot of a name with this (normal-form) hash.
    fn slot(hash: u64) -> usize {
        (hash.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> (64 - PLAIN_SLOTS.trailing_zeros())) as usize
    }

    fn holds(&self, hash: u64, name: &str) -> bool {
        let s = &self.slots[Plain::slot(hash)];
        s.hash == hash && usize::from(s.len) == name.len() && s.bytes[..name.len()] == *name.as_bytes()
    }

    /// Remembers `name` (if it fits), in place of the name in its slot.
    fn put(&mut self, hash: u64, name: &str) {
        if name.len() > PLAIN_BYTES {
            return;
        }
        let s = &mut self.slots[Plain::slot(hash)];
        s.hash = hash;
        s.len = name.len() as u8;
        s.bytes[..name.len()].copy_from_slice(name.as_bytes());
    }

    fn clear(&mut self) {
        self.slots.fill(EMPTY_SLOT);
    }
}

thread_local! {
    static CACHE: RefCell<Cache> = RefCell::new(Cache::default());
}

/// Ties this thread's cache to `a`, emptying it if it was filled for another agreement
/// or has grown too large. Called once per event, before the other functions here.
pub fn begin(a: &Agreement) {
    let mut fingerprint = [0u8; 16];
    let sha = a.sha256.as_bytes();
    fingerprint[..sha.len().min(16)].copy_from_slice(&sha[..sha.len().min(16)]);
    let me = (a as *const Agreement as usize, fingerprint);
    CACHE.with_borrow_mut(|c| {
        if c.agreement != Some(me) || c.members.len() + c.categories.len() + c.texts.len() + c.allowed.len() > LIMIT {
            c.members.clear();
            c.allowed.clear();
            c.normal.clear();
            c.forms.clear();
            c.texts.clear();
            c.categories.clear();
            c.plain.clear();
            c.agreement = Some(me);
        }
    });
}

fn member_in(c: &mut Cache, a: &Agreement, name: &str) -> Member {
    if let Some(m) = c.members.get(name) {
        return *m;
    }
    let normal = names::normalise(name);
    let hash = names::normal_hash(&normal);
    let form = match c.normal.get(normal.as_str()) {
        Some(id) => *id,
        None => {
            let id = c.forms.len() as u32;
            c.forms.push(normal.as_str().into());
            c.normal.insert(normal.into_boxed_str(), id);
            id
        }
    };
    let m = Member { form, hash, refused: names::is_refused_name(name), allowed: field_allowed(a, name) };
    c.members.insert(name.into(), m);
    m
}

/// The hash of a member name's normal form (equal for duplicates), or `BadName` if
/// SPEC 2.5 refuses it. ASCII names are answered without the cache.
pub fn member_hash(a: &Agreement, name: &str) -> Result<u64, Malformed> {
    if let Some(hash) = names::plain_hash(name.as_bytes()) {
        return Ok(hash);
    }
    // Plain ASCII as JSON carries it: only DEL is a control character there (escaped
    // ones arrive unescaped); default-ignorable code points are never ASCII.
    if name.is_ascii() && !name.bytes().any(|b| b < 0x20 || b == 0x7f) {
        return Ok(names::unplain_hash(name));
    }
    CACHE.with_borrow_mut(|c| {
        let m = member_in(c, a, name);
        if m.refused {
            Err(Malformed::BadName)
        } else {
            Ok(m.hash)
        }
    })
}

/// For a member of an object under `sel`: the child of `sel` it names (names compare
/// normalised) and the purposes it may reach; `None` when it is neither named nor
/// kept (`keep_rest`), without classifying it. `hash` is the name's normal-form hash
/// ([`member_hash`]): when no child has it, the name is no child's.
#[inline]
pub fn member<'s>(a: &Agreement, name: &str, hash: u64, sel: &'s Selector, keep_rest: bool) -> Option<(PurposeSet, Option<&'s Selector>)> {
    let maybe_child = sel.hashes.contains(&hash);
    if !maybe_child && !keep_rest {
        return None;
    }
    // Written as the agreement writes it, or in normal form: no need to normalise (both
    // normalise to the child's key, and no two keys are equal). Only the children with
    // the name's hash can be it; each is compared once, as written first (names mostly
    // are).
    let found = if maybe_child {
        sel.hashes.iter().zip(&sel.children).find_map(|(h, (k, s))| match *h == hash {
            true if s.written == name => Some((s, true)),
            true if k == name => Some((s, false)),
            _ => None,
        })
    } else {
        None
    };
    // Named exactly as the agreement writes it: classified at compile time, no cache.
    if let Some((s, true)) = found {
        if let Some(allowed) = s.allowed {
            return Some((allowed, Some(s)));
        }
    }
    member_cached(a, name, hash, sel, keep_rest, maybe_child, found.map(|(s, _)| s))
}

/// [`member`] for a name that needs the cache: out of line, so the common cases above
/// pay nothing for it.
#[inline(never)]
fn member_cached<'s>(a: &Agreement, name: &str, hash: u64, sel: &'s Selector, keep_rest: bool, maybe_child: bool, exact: Option<&'s Selector>) -> Option<(PurposeSet, Option<&'s Selector>)> {
    CACHE.with_borrow_mut(|c| {
        let mut child = exact;
        if child.is_none() && maybe_child {
            let mut scratch = std::mem::take(&mut c.scratch);
            if names::ascii_normal_bytes(name, &mut scratch) {
                child = sel.children.iter().find(|(k, _)| k.as_bytes() == scratch.as_slice()).map(|(_, s)| s);
            } else {
                let form = member_in(c, a, name).form as usize;
                child = sel.children.iter().find(|(k, _)| **k == *c.forms[form]).map(|(_, s)| s);
            }
            c.scratch = scratch;
        }
        if child.is_none() && !keep_rest {
            return None;
        }
        if c.plain.holds(hash, name) {
            return Some((PurposeSet::MAX, child));
        }
        if let Some(&(_, _, allowed)) = c.allowed.find(hash, |(h, n, _)| *h == hash && **n == *name) {
            return Some((allowed, child));
        }
        // A name that none of the taxonomy's terms can be found in reaches every
        // purpose: known in one pass, and remembered apart.
        let mut scratch = std::mem::take(&mut c.scratch);
        let plain = names::ascii_normal_bytes(name, &mut scratch) && !a.taxonomy.field_may_reveal(&scratch);
        c.scratch = scratch;
        if plain {
            c.plain.put(hash, name);
            return Some((PurposeSet::MAX, child));
        }
        let allowed = member_in(c, a, name).allowed;
        c.allowed.insert_unique(hash, (hash, name.into(), allowed), |e| e.0);
        Some((allowed, child))
    })
}

/// The purposes a member of this name may reach: none if it reveals a prohibited
/// category, only the exceptions' purposes for every special one it reveals.
pub fn field_allowed(a: &Agreement, name: &str) -> PurposeSet {
    let t = &a.taxonomy;
    let mut allowed = PurposeSet::MAX;
    t.field_classes(name, |c| match t.class(c) {
        Class::Prohibited => allowed = 0,
        Class::Special => allowed &= a.special_purposes(c),
        Class::Ordinary => {}
    });
    allowed
}

/// Calls `f` with the normal forms of two names (an event's source and category).
pub fn with_normal_pair<R>(a: &str, b: &str, f: impl FnOnce(&str, &str) -> R) -> R {
    CACHE.with_borrow_mut(|c| {
        if let (Some(x), Some(y)) = (c.texts.get(a), c.texts.get(b)) {
            return f(x, y);
        }
        for name in [a, b] {
            if !c.texts.contains_key(name) {
                c.texts.insert(name.into(), names::normalise(name).into_boxed_str());
            }
        }
        f(&c.texts[a], &c.texts[b])
    })
}

/// Steps 3 and 4 for a category name: its class through the taxonomy's terms.
pub fn category(a: &Agreement, name: &str) -> CategoryVerdict {
    CACHE.with_borrow_mut(|c| {
        if let Some(v) = c.categories.get(name) {
            return *v;
        }
        let v = category_verdict(a, name);
        c.categories.insert(name.into(), v);
        v
    })
}

/// [`category`] without the cache.
pub fn category_verdict(a: &Agreement, name: &str) -> CategoryVerdict {
    let t = &a.taxonomy;
    let (mut class, mut allowed) = (Class::Ordinary, PurposeSet::MAX);
    t.category_classes(name, |c| match t.class(c) {
        Class::Prohibited => class = Class::Prohibited,
        Class::Special => {
            if class != Class::Prohibited {
                class = Class::Special;
            }
            allowed &= a.special_purposes(c);
        }
        Class::Ordinary => {}
    });
    CategoryVerdict { label: t.classify_category(name), class, allowed }
}
