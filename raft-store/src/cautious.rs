//! Deserializers for the machine's persistent (imbl) collections that never trust a declared
//! length. imbl's own serde impls reserve room for as many elements as the input declares
//! before reading one, so a damaged or hostile length in a snapshot (a checksum only proves the
//! sender meant those bytes) asked for 280 TB and aborted the process under the fuzzer. These
//! grow as elements actually arrive, as serde's impls for `Vec` and `BTreeMap` do; each field of
//! an imbl type names one with `#[serde(deserialize_with = "…")]`.

use std::fmt;
use std::marker::PhantomData;

use imbl::{OrdMap, OrdSet, Vector};
use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

struct SeqOf<T>(PhantomData<T>, &'static str);

impl<'de, T, C> Visitor<'de> for SeqOf<(T, C)>
where
    T: Deserialize<'de>,
    C: Default + Extend<T>,
{
    type Value = C;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.1)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<C, A::Error> {
        let mut out = C::default();
        while let Some(item) = seq.next_element::<T>()? {
            out.extend(std::iter::once(item));
        }
        Ok(out)
    }
}

struct MapOf<K, V, C>(PhantomData<(K, V, C)>);

impl<'de, K, V, C> Visitor<'de> for MapOf<K, V, C>
where
    K: Deserialize<'de>,
    V: Deserialize<'de>,
    C: Default + Extend<(K, V)>,
{
    type Value = C;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a map")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<C, A::Error> {
        let mut out = C::default();
        while let Some(entry) = map.next_entry::<K, V>()? {
            out.extend(std::iter::once(entry));
        }
        Ok(out)
    }
}

pub(crate) fn vector<'de, D, T>(d: D) -> Result<Vector<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Clone,
{
    d.deserialize_seq(SeqOf::<(T, Vector<T>)>(PhantomData, "a sequence"))
}

pub(crate) fn ord_set<'de, D, T>(d: D) -> Result<OrdSet<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Ord + Clone,
{
    d.deserialize_seq(SeqOf::<(T, OrdSet<T>)>(PhantomData, "a set"))
}

pub(crate) fn ord_map<'de, D, K, V>(d: D) -> Result<OrdMap<K, V>, D::Error>
where
    D: Deserializer<'de>,
    K: Deserialize<'de> + Ord + Clone,
    V: Deserialize<'de> + Clone,
{
    d.deserialize_map(MapOf::<K, V, OrdMap<K, V>>(PhantomData))
}

/// A vector of vectors (a section's rows of seats): the inner ones are cautious too.
pub(crate) fn vector_of_vectors<'de, D, T>(d: D) -> Result<Vector<Vector<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Clone,
{
    struct Inner<T>(Vector<T>);
    impl<'de, T: Deserialize<'de> + Clone> Deserialize<'de> for Inner<T> {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            vector(d).map(Inner)
        }
    }
    // serde's `Vec` grows as elements arrive.
    Ok(Vec::<Inner<T>>::deserialize(d)?.into_iter().map(|inner| inner.0).collect())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use serde::{Deserialize, Serialize};

    use super::*;
    use crate::codec;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Sample {
        #[serde(deserialize_with = "vector")]
        list: Vector<u32>,
        #[serde(deserialize_with = "ord_set")]
        set: OrdSet<String>,
        #[serde(deserialize_with = "ord_map")]
        map: OrdMap<u64, Vector<u8>>,
    }

    fn sample() -> Sample {
        Sample {
            list: (0..5).collect(),
            set: ["a".to_owned(), "b".to_owned()].into_iter().collect(),
            map: [(1u64, Vector::from(vec![1u8, 2])), (9, Vector::new())].into_iter().collect(),
        }
    }

    #[test]
    fn values_come_back_as_they_were() {
        let bytes = codec::encode(&sample()).unwrap();
        assert_eq!(codec::decode::<Sample>(&bytes).unwrap(), sample());
    }

    /// The sample with its list's length (a varint, first in the body) rewritten to u64::MAX
    /// (0xFD marks a u64).
    fn hostile() -> Vec<u8> {
        let body = codec::body(&codec::encode(&sample()).unwrap()).unwrap().to_vec();
        let mut hostile = vec![0xFD];
        hostile.extend_from_slice(&u64::MAX.to_le_bytes());
        hostile.extend_from_slice(&body[1..]);
        codec::frame(&hostile)
    }

    #[test]
    fn a_huge_declared_length_is_refused_without_reserving_it() {
        assert!(codec::decode::<Sample>(&hostile()).is_err());
    }

    #[test]
    fn imbls_own_deserializer_would_have_reserved_it() {
        #[derive(Debug, Deserialize)]
        #[allow(dead_code)]
        struct Trusting {
            list: Vector<u32>,
        }
        let decoded = std::panic::catch_unwind(|| codec::decode::<Trusting>(&hostile()).is_err());
        assert!(decoded.is_err(), "imbl reserves the declared length (a capacity overflow): this module's reason");
    }
}
