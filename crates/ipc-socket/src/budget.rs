//! A serde [`Deserializer`] wrapper that caps the elements (sequence items and map entries) one
//! decode may produce, for [`typed`](crate::typed)'s hostile input: a peer announcing 2^64
//! elements that take no bytes (`()`, a unit struct, ...) would otherwise keep the decoding
//! thread busy for good, since postcard takes them one by one and they never run out of
//! bytes. Every element that takes at least a byte is bounded by the bytes present already;
//! the cap only ever stops zero-sized ones.
//!
//! The wrapper passes everything through unchanged (every `deserialize_*` hint, every
//! `visit_*` call, borrowed strings and bytes), wrapping only what may yield elements:
//! sequences, maps, enums' variants, and the values nested in them.

use std::cell::Cell;
use std::fmt;

use serde::de::{
    self, DeserializeSeed, Deserializer, EnumAccess, MapAccess, SeqAccess, VariantAccess, Visitor,
};

/// Elements one decode may still produce; shared by every level of it.
pub(crate) struct Budget {
    left: Cell<u64>,
    spent: Cell<bool>,
}

impl Budget {
    /// At most `elements` elements in all.
    pub(crate) fn new(elements: u64) -> Budget {
        Budget {
            left: Cell::new(elements),
            spent: Cell::new(false),
        }
    }

    /// `inner`, counting against this budget.
    pub(crate) fn over<D>(&self, inner: D) -> De<'_, D> {
        De {
            inner,
            budget: self,
        }
    }

    /// Whether a decode failed for want of elements (its error is then the format's generic
    /// "custom" one, which cannot carry the reason).
    pub(crate) fn ran_out(&self) -> bool {
        self.spent.get()
    }

    fn spend<E: de::Error>(&self) -> Result<(), E> {
        match self.left.get().checked_sub(1) {
            Some(left) => {
                self.left.set(left);
                Ok(())
            }
            None => {
                self.spent.set(true);
                Err(E::custom("more elements than the message allows"))
            }
        }
    }
}

/// A deserializer counting the elements it yields against a [`Budget`].
pub(crate) struct De<'b, D> {
    inner: D,
    budget: &'b Budget,
}

/// A visitor whose sequences, maps and enums count against a [`Budget`].
struct Wrap<'b, V> {
    inner: V,
    budget: &'b Budget,
    /// Whether a sequence it visits counts its elements: `false` for tuples, structs and
    /// their variants, whose length the type fixes (postcard visits them as sequences too).
    counted: bool,
}

/// A seed whose value's deserializer counts against a [`Budget`].
struct Seed<'b, S> {
    inner: S,
    budget: &'b Budget,
}

struct Seq<'b, A> {
    inner: A,
    budget: &'b Budget,
    counted: bool,
}

struct Map<'b, A> {
    inner: A,
    budget: &'b Budget,
}

struct Enum<'b, A> {
    inner: A,
    budget: &'b Budget,
}

struct Variant<'b, A> {
    inner: A,
    budget: &'b Budget,
}

impl<'b, V> Wrap<'b, V> {
    fn new(inner: V, budget: &'b Budget) -> Self {
        Wrap {
            inner,
            budget,
            counted: true,
        }
    }

    /// For a value whose sequence length the type fixes (a tuple, a struct).
    fn fixed(inner: V, budget: &'b Budget) -> Self {
        Wrap {
            inner,
            budget,
            counted: false,
        }
    }
}

macro_rules! forward_deserialize {
    ($($method:ident($($arg:ident: $ty:ty),*);)*) => {
        $(
            fn $method<V: Visitor<'de>>(self, $($arg: $ty,)* visitor: V)
                -> Result<V::Value, Self::Error>
            {
                self.inner.$method($($arg,)* Wrap::new(visitor, self.budget))
            }
        )*
    };
}

impl<'de, D: Deserializer<'de>> Deserializer<'de> for De<'_, D> {
    type Error = D::Error;

    forward_deserialize! {
        deserialize_any();
        deserialize_bool();
        deserialize_i8();
        deserialize_i16();
        deserialize_i32();
        deserialize_i64();
        deserialize_i128();
        deserialize_u8();
        deserialize_u16();
        deserialize_u32();
        deserialize_u64();
        deserialize_u128();
        deserialize_f32();
        deserialize_f64();
        deserialize_char();
        deserialize_str();
        deserialize_string();
        deserialize_bytes();
        deserialize_byte_buf();
        deserialize_option();
        deserialize_unit();
        deserialize_unit_struct(name: &'static str);
        deserialize_newtype_struct(name: &'static str);
        deserialize_seq();
        deserialize_map();
        deserialize_enum(name: &'static str, variants: &'static [&'static str]);
        deserialize_identifier();
        deserialize_ignored_any();
    }

    fn deserialize_tuple<V: Visitor<'de>>(self, len: usize, v: V) -> Result<V::Value, D::Error> {
        self.inner
            .deserialize_tuple(len, Wrap::fixed(v, self.budget))
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        len: usize,
        v: V,
    ) -> Result<V::Value, D::Error> {
        self.inner
            .deserialize_tuple_struct(name, len, Wrap::fixed(v, self.budget))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, D::Error> {
        self.inner
            .deserialize_struct(name, fields, Wrap::fixed(v, self.budget))
    }

    fn is_human_readable(&self) -> bool {
        self.inner.is_human_readable()
    }
}

macro_rules! forward_visit {
    ($($method:ident($ty:ty);)*) => {
        $(
            fn $method<E: de::Error>(self, v: $ty) -> Result<Self::Value, E> {
                self.inner.$method(v)
            }
        )*
    };
}

impl<'de, V: Visitor<'de>> Visitor<'de> for Wrap<'_, V> {
    type Value = V::Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.expecting(f)
    }

    forward_visit! {
        visit_bool(bool);
        visit_i8(i8);
        visit_i16(i16);
        visit_i32(i32);
        visit_i64(i64);
        visit_i128(i128);
        visit_u8(u8);
        visit_u16(u16);
        visit_u32(u32);
        visit_u64(u64);
        visit_u128(u128);
        visit_f32(f32);
        visit_f64(f64);
        visit_char(char);
        visit_str(&str);
        visit_borrowed_str(&'de str);
        visit_string(String);
        visit_bytes(&[u8]);
        visit_borrowed_bytes(&'de [u8]);
        visit_byte_buf(Vec<u8>);
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        self.inner.visit_none()
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        self.inner.visit_unit()
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        self.inner.visit_some(self.budget.over(d))
    }

    fn visit_newtype_struct<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        self.inner.visit_newtype_struct(self.budget.over(d))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        self.inner.visit_seq(Seq {
            inner: seq,
            budget: self.budget,
            counted: self.counted,
        })
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        self.inner.visit_map(Map {
            inner: map,
            budget: self.budget,
        })
    }

    fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<Self::Value, A::Error> {
        self.inner.visit_enum(Enum {
            inner: data,
            budget: self.budget,
        })
    }
}

impl<'de, S: DeserializeSeed<'de>> DeserializeSeed<'de> for Seed<'_, S> {
    type Value = S::Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<S::Value, D::Error> {
        self.inner.deserialize(self.budget.over(d))
    }
}

impl<'de, A: SeqAccess<'de>> SeqAccess<'de> for Seq<'_, A> {
    type Error = A::Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Self::Error> {
        let budget = self.budget;
        let next = self.inner.next_element_seed(Seed {
            inner: seed,
            budget,
        })?;
        if self.counted && next.is_some() {
            budget.spend()?;
        }
        Ok(next)
    }

    fn size_hint(&self) -> Option<usize> {
        self.inner.size_hint()
    }
}

impl<'de, A: MapAccess<'de>> MapAccess<'de> for Map<'_, A> {
    type Error = A::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Self::Error> {
        let budget = self.budget;
        let key = self.inner.next_key_seed(Seed {
            inner: seed,
            budget,
        })?;
        if key.is_some() {
            budget.spend()?;
        }
        Ok(key)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(
        &mut self,
        seed: V,
    ) -> Result<V::Value, Self::Error> {
        self.inner.next_value_seed(Seed {
            inner: seed,
            budget: self.budget,
        })
    }

    fn size_hint(&self) -> Option<usize> {
        self.inner.size_hint()
    }
}

impl<'b, 'de, A: EnumAccess<'de>> EnumAccess<'de> for Enum<'b, A> {
    type Error = A::Error;
    type Variant = Variant<'b, A::Variant>;

    fn variant_seed<V: DeserializeSeed<'de>>(
        self,
        seed: V,
    ) -> Result<(V::Value, Self::Variant), Self::Error> {
        let budget = self.budget;
        let (value, variant) = self.inner.variant_seed(Seed {
            inner: seed,
            budget,
        })?;
        Ok((
            value,
            Variant {
                inner: variant,
                budget,
            },
        ))
    }
}

impl<'de, A: VariantAccess<'de>> VariantAccess<'de> for Variant<'_, A> {
    type Error = A::Error;

    fn unit_variant(self) -> Result<(), Self::Error> {
        self.inner.unit_variant()
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(
        self,
        seed: T,
    ) -> Result<T::Value, Self::Error> {
        self.inner.newtype_variant_seed(Seed {
            inner: seed,
            budget: self.budget,
        })
    }

    fn tuple_variant<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value, A::Error> {
        self.inner
            .tuple_variant(len, Wrap::fixed(visitor, self.budget))
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, A::Error> {
        self.inner
            .struct_variant(fields, Wrap::fixed(visitor, self.budget))
    }
}
