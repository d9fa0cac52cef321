//! List limits enforced while decoding. Validation runs on a decoded
//! message, too late for memory: an empty component is 2 bytes on the wire
//! and 32 in memory, so a 542-byte zstd frame expanding to `MAX_DECODED`
//! made the decoder allocate 400 MiB before `validate` counted the list.
//! These deserializers stop at the limit instead. The byte layout is
//! unchanged: only the `Deserialize` side of the lists uses them.

use std::fmt;
use std::marker::PhantomData;

use serde::de::{Deserialize, Deserializer, Error as _, SeqAccess, Visitor};

use super::{MAX_ITEMS, MAX_STEPS};

/// A batch's list: at most [`MAX_ITEMS`] entries.
pub(super) fn items<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    d.deserialize_seq(Bounded(MAX_ITEMS, PhantomData))
}

/// A prediction's horizons: at most [`MAX_STEPS`].
pub(super) fn steps<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    d.deserialize_seq(Bounded(MAX_STEPS, PhantomData))
}

/// Collects a sequence of at most `.0` elements.
struct Bounded<T>(usize, PhantomData<T>);

impl<'de, T: Deserialize<'de>> Visitor<'de> for Bounded<T> {
    type Value = Vec<T>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "a list of at most {} entries", self.0)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<T>, A::Error> {
        // postcard announces the length up front: refuse before reading on.
        let hint = seq.size_hint().unwrap_or(0);
        if hint > self.0 {
            return Err(A::Error::invalid_length(hint, &self));
        }
        let mut list = Vec::with_capacity(hint);
        while let Some(item) = seq.next_element()? {
            if list.len() == self.0 {
                return Err(A::Error::invalid_length(self.0 + 1, &self));
            }
            list.push(item);
        }
        Ok(list)
    }
}
