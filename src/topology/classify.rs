//! Tells what kind of mistake a TOML document holds from where the error
//! was raised, not from its wording.
//!
//! toml's error carries only a message and a span. Reading a topology is two
//! steps, and each error is told by the step that raised it:
//!
//! 1. **Parse** ([`toml::de::Deserializer::parse`]): the text is not TOML.
//! 2. **Deserialize**: the TOML is not a topology. serde's derived code and
//!    our own `Deserialize` impls raise these through the constructors of
//!    [`serde::de::Error`] (`unknown_field`, `missing_field`, `invalid_type`,
//!    …). [`from_str`] deserializes through [`Tracked`], a thin wrapper
//!    around toml's deserializer whose maps, sequences, enums and visitors
//!    hand the deserialized types an error type of ours, [`Kinded`]. It
//!    remembers which constructor made it, and is turned back into toml's
//!    own error (message untouched) before toml sees it, so toml still adds
//!    the span as the error unwinds. The kind rides beside it in a [`Cell`]
//!    that lives for this one parse.
//!
//! Errors toml's deserializer raises itself (an enum given as a number or as
//! a table of two entries, an integer out of range) carry no kind.

use std::cell::Cell;
use std::fmt;

use serde::de::{
    self, DeserializeSeed, Deserializer, EnumAccess, Expected, MapAccess, SeqAccess, Unexpected,
    VariantAccess, Visitor,
};

/// The serde error constructor that made a deserialize-step error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Raised {
    /// `unknown_field`: a key the table does not have.
    UnknownField {
        /// The key as written.
        field: String,
    },
    /// `missing_field`: a required key is absent.
    MissingField,
    /// `invalid_type`: a value of the wrong TOML type.
    InvalidType,
    /// `invalid_value`: the right type, a refused value (`u32` out of range).
    InvalidValue,
    /// `invalid_length`: a sequence of the wrong length.
    InvalidLength,
    /// `unknown_variant`: a word not in a closed set.
    UnknownVariant,
    /// `duplicate_field`: the same key twice in one table.
    DuplicateField,
    /// `custom`: a topology `Deserialize` impl refused a value (the size
    /// and duration units).
    Custom,
}

/// Where a toml error came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Origin {
    /// The TOML parser: the text is not TOML.
    Parse,
    /// Deserializing the parsed document; `None` when toml's deserializer
    /// raised the error itself rather than a serde error constructor.
    Deserialize(Option<Raised>),
}

/// A refused document: toml's error (message and span) and where it came from.
#[derive(Debug)]
pub(super) struct Failure {
    /// Which step raised it, and how.
    pub origin: Origin,
    /// toml's error, with the span toml gave it.
    pub error: toml::de::Error,
}

/// Parses `source` as TOML and deserializes it into `T`, telling a failure
/// by the step and the serde constructor that raised it.
pub(super) fn from_str<'de, T: de::Deserialize<'de>>(source: &'de str) -> Result<T, Failure> {
    let document = toml::de::Deserializer::parse(source).map_err(|error| Failure {
        origin: Origin::Parse,
        error,
    })?;
    let raised = Cell::new(None);
    T::deserialize(Tracked {
        inner: document,
        raised: &raised,
    })
    .map_err(|error| Failure {
        origin: Origin::Deserialize(raised.take()),
        error,
    })
}

/// Deserializes an already parsed (and perhaps edited) document into `T`,
/// as [`from_str`] does after its parse step.
pub(super) fn from_document<'de, T: de::Deserialize<'de>>(
    document: toml::Spanned<toml::de::DeTable<'de>>,
) -> Result<T, Failure> {
    let raised = Cell::new(None);
    T::deserialize(Tracked {
        inner: toml::de::Deserializer::from(document),
        raised: &raised,
    })
    .map_err(|error| Failure {
        origin: Origin::Deserialize(raised.take()),
        error,
    })
}

/// The error type the deserialized types see: the deserializer's own error,
/// made by the same constructor (so with the same message), and which
/// constructor that was.
#[derive(Debug)]
struct Kinded<E> {
    raised: Option<Raised>,
    error: E,
}

impl<E> Kinded<E> {
    fn new(raised: Raised, error: E) -> Self {
        Kinded {
            raised: Some(raised),
            error,
        }
    }

    /// An error coming up from the deserializer: it is ours if the cell
    /// holds a kind (it was raised below and passed through toml), or
    /// toml's own.
    fn enter(error: E, raised: &Cell<Option<Raised>>) -> Self {
        Kinded {
            raised: raised.take(),
            error,
        }
    }

    /// Hands the error back to the deserializer, keeping its kind aside.
    fn leave(self, raised: &Cell<Option<Raised>>) -> E {
        raised.set(self.raised);
        self.error
    }
}

impl<E: fmt::Display> fmt::Display for Kinded<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.error.fmt(f)
    }
}

impl<E: de::Error> std::error::Error for Kinded<E> {}

impl<E: de::Error> de::Error for Kinded<E> {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        Kinded::new(Raised::Custom, E::custom(msg))
    }

    fn invalid_type(unexp: Unexpected<'_>, exp: &dyn Expected) -> Self {
        Kinded::new(Raised::InvalidType, E::invalid_type(unexp, exp))
    }

    fn invalid_value(unexp: Unexpected<'_>, exp: &dyn Expected) -> Self {
        Kinded::new(Raised::InvalidValue, E::invalid_value(unexp, exp))
    }

    fn invalid_length(len: usize, exp: &dyn Expected) -> Self {
        Kinded::new(Raised::InvalidLength, E::invalid_length(len, exp))
    }

    fn unknown_variant(variant: &str, expected: &'static [&'static str]) -> Self {
        Kinded::new(
            Raised::UnknownVariant,
            E::unknown_variant(variant, expected),
        )
    }

    fn unknown_field(field: &str, expected: &'static [&'static str]) -> Self {
        let raised = Raised::UnknownField {
            field: field.to_owned(),
        };
        Kinded::new(raised, E::unknown_field(field, expected))
    }

    fn missing_field(field: &'static str) -> Self {
        Kinded::new(Raised::MissingField, E::missing_field(field))
    }

    fn duplicate_field(field: &'static str) -> Self {
        Kinded::new(Raised::DuplicateField, E::duplicate_field(field))
    }
}

/// A deserializer that hands every visitor it is given a [`TrackedVisitor`].
struct Tracked<'c, D> {
    inner: D,
    raised: &'c Cell<Option<Raised>>,
}

impl<'c, D> Tracked<'c, D> {
    fn visitor<V>(&self, inner: V) -> TrackedVisitor<'c, V> {
        TrackedVisitor {
            inner,
            raised: self.raised,
        }
    }
}

/// Forwards `deserialize_*` methods, wrapping the visitor.
macro_rules! forward_deserialize {
    ($($method:ident($($arg:ident: $ty:ty),*);)*) => {$(
        fn $method<V: Visitor<'de>>(
            self,
            $($arg: $ty,)*
            visitor: V,
        ) -> Result<V::Value, Self::Error> {
            let visitor = self.visitor(visitor);
            self.inner.$method($($arg,)* visitor)
        }
    )*};
}

impl<'de, D: Deserializer<'de>> Deserializer<'de> for Tracked<'_, D> {
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
        deserialize_tuple(len: usize);
        deserialize_tuple_struct(name: &'static str, len: usize);
        deserialize_map();
        deserialize_struct(name: &'static str, fields: &'static [&'static str]);
        deserialize_enum(name: &'static str, variants: &'static [&'static str]);
        deserialize_identifier();
        deserialize_ignored_any();
    }

    fn is_human_readable(&self) -> bool {
        self.inner.is_human_readable()
    }
}

/// A visitor that gives the visitor it wraps [`Kinded`] errors and tracked
/// accessors, and hands errors back to the deserializer as its own.
struct TrackedVisitor<'c, V> {
    inner: V,
    raised: &'c Cell<Option<Raised>>,
}

/// Forwards `visit_*` methods that take a plain value.
macro_rules! forward_visit {
    ($($method:ident($($ty:ty)?);)*) => {$(
        fn $method<E: de::Error>(self $(, v: $ty)?) -> Result<V::Value, E> {
            let raised = self.raised;
            self.inner
                .$method::<Kinded<E>>($(forward_visit!(@arg v $ty))?)
                .map_err(|e| e.leave(raised))
        }
    )*};
    (@arg $v:ident $ty:ty) => { $v };
}

impl<'de, V: Visitor<'de>> Visitor<'de> for TrackedVisitor<'_, V> {
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
        visit_none();
        visit_unit();
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<V::Value, D::Error> {
        let raised = self.raised;
        self.inner.visit_some(Tracked {
            inner: deserializer,
            raised,
        })
    }

    fn visit_newtype_struct<D: Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<V::Value, D::Error> {
        let raised = self.raised;
        self.inner.visit_newtype_struct(Tracked {
            inner: deserializer,
            raised,
        })
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<V::Value, A::Error> {
        let raised = self.raised;
        let seq = Access { inner: seq, raised };
        self.inner.visit_seq(seq).map_err(|e| e.leave(raised))
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<V::Value, A::Error> {
        let raised = self.raised;
        let map = Access { inner: map, raised };
        self.inner.visit_map(map).map_err(|e| e.leave(raised))
    }

    fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<V::Value, A::Error> {
        let raised = self.raised;
        let data = Access {
            inner: data,
            raised,
        };
        self.inner.visit_enum(data).map_err(|e| e.leave(raised))
    }
}

/// A seed whose deserializer is [`Tracked`].
struct TrackedSeed<'c, S> {
    inner: S,
    raised: &'c Cell<Option<Raised>>,
}

impl<'de, S: DeserializeSeed<'de>> DeserializeSeed<'de> for TrackedSeed<'_, S> {
    type Value = S::Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<S::Value, D::Error> {
        self.inner.deserialize(Tracked {
            inner: deserializer,
            raised: self.raised,
        })
    }
}

/// A sequence, map, enum or variant access of toml's, seen with [`Kinded`]
/// errors and with every seed and visitor it is given tracked.
struct Access<'c, A> {
    inner: A,
    raised: &'c Cell<Option<Raised>>,
}

impl<'c, A> Access<'c, A> {
    fn seed<S>(&self, inner: S) -> TrackedSeed<'c, S> {
        TrackedSeed {
            inner,
            raised: self.raised,
        }
    }

    fn visitor<V>(&self, inner: V) -> TrackedVisitor<'c, V> {
        TrackedVisitor {
            inner,
            raised: self.raised,
        }
    }

    fn enter<E>(&self, error: E) -> Kinded<E> {
        Kinded::enter(error, self.raised)
    }
}

impl<'de, A: SeqAccess<'de>> SeqAccess<'de> for Access<'_, A> {
    type Error = Kinded<A::Error>;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Self::Error> {
        let seed = self.seed(seed);
        self.inner
            .next_element_seed(seed)
            .map_err(|e| self.enter(e))
    }

    fn size_hint(&self) -> Option<usize> {
        self.inner.size_hint()
    }
}

impl<'de, A: MapAccess<'de>> MapAccess<'de> for Access<'_, A> {
    type Error = Kinded<A::Error>;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Self::Error> {
        let seed = self.seed(seed);
        self.inner.next_key_seed(seed).map_err(|e| self.enter(e))
    }

    fn next_value_seed<S: DeserializeSeed<'de>>(
        &mut self,
        seed: S,
    ) -> Result<S::Value, Self::Error> {
        let seed = self.seed(seed);
        self.inner.next_value_seed(seed).map_err(|e| self.enter(e))
    }

    fn size_hint(&self) -> Option<usize> {
        self.inner.size_hint()
    }
}

impl<'de, 'c, A: EnumAccess<'de>> EnumAccess<'de> for Access<'c, A> {
    type Error = Kinded<A::Error>;
    type Variant = Access<'c, A::Variant>;

    fn variant_seed<S: DeserializeSeed<'de>>(
        self,
        seed: S,
    ) -> Result<(S::Value, Self::Variant), Self::Error> {
        let raised = self.raised;
        let seed = self.seed(seed);
        match self.inner.variant_seed(seed) {
            Ok((value, variant)) => Ok((
                value,
                Access {
                    inner: variant,
                    raised,
                },
            )),
            Err(error) => Err(Kinded::enter(error, raised)),
        }
    }
}

impl<'de, A: VariantAccess<'de>> VariantAccess<'de> for Access<'_, A> {
    type Error = Kinded<A::Error>;

    fn unit_variant(self) -> Result<(), Self::Error> {
        let raised = self.raised;
        self.inner
            .unit_variant()
            .map_err(|e| Kinded::enter(e, raised))
    }

    fn newtype_variant_seed<S: DeserializeSeed<'de>>(
        self,
        seed: S,
    ) -> Result<S::Value, Self::Error> {
        let raised = self.raised;
        let seed = self.seed(seed);
        self.inner
            .newtype_variant_seed(seed)
            .map_err(|e| Kinded::enter(e, raised))
    }

    fn tuple_variant<V: Visitor<'de>>(
        self,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        let raised = self.raised;
        let visitor = self.visitor(visitor);
        self.inner
            .tuple_variant(len, visitor)
            .map_err(|e| Kinded::enter(e, raised))
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        let raised = self.raised;
        let visitor = self.visitor(visitor);
        self.inner
            .struct_variant(fields, visitor)
            .map_err(|e| Kinded::enter(e, raised))
    }
}
