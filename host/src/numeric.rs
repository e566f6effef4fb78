//! serde straight to and from the arguments and results of numeric tasks,
//! with no `serde_json::Value` in between: the typed helpers' hot path for
//! numeric exports (`Pool::map::<i64, i64>` on `(i64) -> i64`).
//!
//! The mapping is the JSON front ends' (`docs/abi.md`, "Numeric exports"):
//! a number for one parameter, a sequence (array, tuple) for several, unit
//! or `None` for none; results come back as one number, unit, or a sequence.

use std::fmt;

use serde::de::{self, DeserializeSeed, Visitor};
use serde::ser::{self, Impossible, Serialize};

use crate::task::{Values, WasmType, WasmValue};

/// A value that does not map to a task's numbers.
#[derive(Debug)]
pub(crate) struct NumericError(pub(crate) String);

impl fmt::Display for NumericError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for NumericError {}

impl ser::Error for NumericError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        NumericError(msg.to_string())
    }
}

impl de::Error for NumericError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        NumericError(msg.to_string())
    }
}

fn describe(params: &[WasmType]) -> String {
    params
        .iter()
        .map(|p| p.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Serializes `input` as the arguments of a task with `params`.
pub(crate) fn to_args<I: Serialize + ?Sized>(
    params: &[WasmType],
    input: &I,
) -> Result<Values, NumericError> {
    let mut out = ArgSerializer {
        params,
        out: Values::default(),
        depth: 0,
    };
    input.serialize(&mut out)?;
    if out.out.len() != params.len() {
        return Err(NumericError(format!(
            "the task takes {} parameter{} ({}), but the input gives {}",
            params.len(),
            if params.len() == 1 { "" } else { "s" },
            describe(params),
            out.out.len()
        )));
    }
    Ok(out.out)
}

struct ArgSerializer<'p> {
    params: &'p [WasmType],
    out: Values,
    depth: u32,
}

impl ArgSerializer<'_> {
    fn next_type(&self) -> Result<WasmType, NumericError> {
        self.params.get(self.out.len()).copied().ok_or_else(|| {
            NumericError(format!(
                "the task takes {} parameter(s) ({}); the input gives more",
                self.params.len(),
                describe(self.params)
            ))
        })
    }

    /// Which parameter the next value is for, in messages: `the i32
    /// parameter`, or `parameter 2 (i32)` when there are several.
    fn which(&self, ty: WasmType) -> String {
        if self.params.len() == 1 {
            format!("the {ty} parameter")
        } else {
            format!("parameter {} ({ty})", self.out.len() + 1)
        }
    }

    /// An integer: exactly, into an integer parameter's range (an `i32`
    /// also takes `i32::MAX + 1 ..= u32::MAX`, an `i64` likewise up to
    /// `u64::MAX`, passed with the same bits); anything else is refused.
    fn int(&mut self, v: i128) -> Result<(), NumericError> {
        let ty = self.next_type()?;
        let out_of_range = |lo: i128, hi: i128| {
            NumericError(format!(
                "{v} is out of range for {}, which takes {lo} to {hi} \
                 (values above {} are passed as the unsigned number with the same bits)",
                self.which(ty),
                hi >> 1,
            ))
        };
        let value = match ty {
            WasmType::I32 => match u32::try_from(v) {
                Ok(u) => WasmValue::I32(u as i32),
                Err(_) => WasmValue::I32(
                    i32::try_from(v).map_err(|_| out_of_range(i32::MIN.into(), u32::MAX.into()))?,
                ),
            },
            WasmType::I64 => match u64::try_from(v) {
                Ok(u) => WasmValue::I64(u as i64),
                Err(_) => WasmValue::I64(
                    i64::try_from(v).map_err(|_| out_of_range(i64::MIN.into(), u64::MAX.into()))?,
                ),
            },
            // The nearest float, as for any number written in decimal.
            WasmType::F32 => WasmValue::F32(v as f32),
            WasmType::F64 => WasmValue::F64(v as f64),
        };
        self.out.0.push(value);
        Ok(())
    }

    /// A float: into a float parameter; an integer parameter refuses it,
    /// even when its value is a whole number (`1e3`, `1000.0`), as serde
    /// refuses it for a Rust integer (and so an SDK task's `u32`).
    fn float(&mut self, v: f64) -> Result<(), NumericError> {
        let ty = self.next_type()?;
        let value = match ty {
            WasmType::F32 => WasmValue::F32(v as f32),
            WasmType::F64 => WasmValue::F64(v),
            WasmType::I32 | WasmType::I64 => {
                let (lo, hi) = if ty == WasmType::I32 {
                    (f64::from(i32::MIN), f64::from(u32::MAX))
                } else {
                    (i64::MIN as f64, u64::MAX as f64)
                };
                let why = if v.is_finite() && v.fract() == 0.0 && !(lo..=hi).contains(&v) {
                    // Beyond any integer that fits, whatever its spelling
                    // (serde reads integers past 128 bits as floats).
                    format!("{v:e} is out of range for {}", self.which(ty))
                } else if v.is_finite() && v.fract() == 0.0 {
                    format!(
                        "{} takes an integer, and {v:?} is a floating-point number \
                         (written with a fraction or an exponent, such as 1e3 or 1000.0): \
                         write it as {v}",
                        self.which(ty)
                    )
                } else {
                    format!("{} takes an integer, and {v} is not one", self.which(ty))
                };
                return Err(NumericError(why));
            }
        };
        self.out.0.push(value);
        Ok(())
    }

    fn unsupported(&self, what: &str) -> NumericError {
        NumericError(format!(
            "expected a number or an array of numbers for ({}), got {what}",
            describe(self.params)
        ))
    }
}

impl ser::Serializer for &mut ArgSerializer<'_> {
    type Ok = ();
    type Error = NumericError;
    type SerializeSeq = Self;
    type SerializeTuple = Self;
    type SerializeTupleStruct = Self;
    type SerializeTupleVariant = Impossible<(), NumericError>;
    type SerializeMap = Impossible<(), NumericError>;
    type SerializeStruct = Impossible<(), NumericError>;
    type SerializeStructVariant = Impossible<(), NumericError>;

    fn serialize_bool(self, _: bool) -> Result<(), NumericError> {
        Err(self.unsupported("a boolean"))
    }
    fn serialize_i8(self, v: i8) -> Result<(), NumericError> {
        self.int(v.into())
    }
    fn serialize_i16(self, v: i16) -> Result<(), NumericError> {
        self.int(v.into())
    }
    fn serialize_i32(self, v: i32) -> Result<(), NumericError> {
        self.int(v.into())
    }
    fn serialize_i64(self, v: i64) -> Result<(), NumericError> {
        self.int(v.into())
    }
    fn serialize_i128(self, v: i128) -> Result<(), NumericError> {
        self.int(v)
    }
    fn serialize_u8(self, v: u8) -> Result<(), NumericError> {
        self.int(v.into())
    }
    fn serialize_u16(self, v: u16) -> Result<(), NumericError> {
        self.int(v.into())
    }
    fn serialize_u32(self, v: u32) -> Result<(), NumericError> {
        self.int(v.into())
    }
    fn serialize_u64(self, v: u64) -> Result<(), NumericError> {
        self.int(v.into())
    }
    fn serialize_f32(self, v: f32) -> Result<(), NumericError> {
        self.float(v.into())
    }
    fn serialize_f64(self, v: f64) -> Result<(), NumericError> {
        self.float(v)
    }
    fn serialize_char(self, _: char) -> Result<(), NumericError> {
        Err(self.unsupported("a character"))
    }
    fn serialize_str(self, v: &str) -> Result<(), NumericError> {
        Err(self.unsupported(&format!("the string {v:?}")))
    }
    fn serialize_bytes(self, _: &[u8]) -> Result<(), NumericError> {
        Err(self.unsupported("bytes"))
    }
    fn serialize_none(self) -> Result<(), NumericError> {
        self.serialize_unit()
    }
    fn serialize_some<T: Serialize + ?Sized>(self, v: &T) -> Result<(), NumericError> {
        v.serialize(self)
    }
    fn serialize_unit(self) -> Result<(), NumericError> {
        if self.depth == 0 {
            Ok(())
        } else {
            Err(self.unsupported("null inside an array"))
        }
    }
    fn serialize_unit_struct(self, _: &'static str) -> Result<(), NumericError> {
        self.serialize_unit()
    }
    fn serialize_unit_variant(
        self,
        _: &'static str,
        _: u32,
        v: &'static str,
    ) -> Result<(), NumericError> {
        Err(self.unsupported(&format!("the variant {v}")))
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        v: &T,
    ) -> Result<(), NumericError> {
        v.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        v: &'static str,
        _: &T,
    ) -> Result<(), NumericError> {
        Err(self.unsupported(&format!("the variant {v}")))
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Self, NumericError> {
        if self.depth > 0 {
            return Err(self.unsupported("a nested array"));
        }
        self.depth += 1;
        Ok(self)
    }
    fn serialize_tuple(self, len: usize) -> Result<Self, NumericError> {
        self.serialize_seq(Some(len))
    }
    fn serialize_tuple_struct(self, _: &'static str, len: usize) -> Result<Self, NumericError> {
        self.serialize_seq(Some(len))
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        v: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleVariant, NumericError> {
        Err(self.unsupported(&format!("the variant {v}")))
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Self::SerializeMap, NumericError> {
        Err(self.unsupported("a map"))
    }
    fn serialize_struct(
        self,
        name: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStruct, NumericError> {
        Err(self.unsupported(&format!("the struct {name}")))
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        v: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStructVariant, NumericError> {
        Err(self.unsupported(&format!("the variant {v}")))
    }
}

macro_rules! seq_impl {
    ($trait:ident, $method:ident) => {
        impl ser::$trait for &mut ArgSerializer<'_> {
            type Ok = ();
            type Error = NumericError;
            fn $method<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), NumericError> {
                v.serialize(&mut **self)
            }
            fn end(self) -> Result<(), NumericError> {
                self.depth -= 1;
                Ok(())
            }
        }
    };
}
seq_impl!(SerializeSeq, serialize_element);
seq_impl!(SerializeTuple, serialize_element);
seq_impl!(SerializeTupleStruct, serialize_field);

/// [`to_args`] for its common case, one number for a task of one
/// parameter, without building a list: the value, or `None` for anything
/// else (a sequence, a value out of range, a float for an integer, ...),
/// which [`to_args`] then maps or refuses with its message. It accepts
/// exactly what `to_args` accepts as a lone number, with the same result.
#[inline]
pub(crate) fn to_one_arg<I: Serialize + ?Sized>(ty: WasmType, input: &I) -> Option<WasmValue> {
    input.serialize(OneArg(ty)).ok()
}

/// The serializer of [`to_one_arg`]: its error only says "not that case".
struct OneArg(WasmType);

#[derive(Debug)]
struct NotOne;

impl fmt::Display for NotOne {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("not a lone number")
    }
}

impl std::error::Error for NotOne {}

impl ser::Error for NotOne {
    fn custom<T: fmt::Display>(_: T) -> Self {
        NotOne
    }
}

impl OneArg {
    /// As [`ArgSerializer::int`], for values in range.
    #[inline]
    fn int(self, v: i128) -> Result<WasmValue, NotOne> {
        Ok(match self.0 {
            WasmType::I32 => match u32::try_from(v) {
                Ok(u) => WasmValue::I32(u as i32),
                Err(_) => WasmValue::I32(i32::try_from(v).map_err(|_| NotOne)?),
            },
            WasmType::I64 => match u64::try_from(v) {
                Ok(u) => WasmValue::I64(u as i64),
                Err(_) => WasmValue::I64(i64::try_from(v).map_err(|_| NotOne)?),
            },
            WasmType::F32 => WasmValue::F32(v as f32),
            WasmType::F64 => WasmValue::F64(v as f64),
        })
    }

    /// As [`ArgSerializer::float`], for a float parameter.
    #[inline]
    fn float(self, v: f64) -> Result<WasmValue, NotOne> {
        match self.0 {
            WasmType::F32 => Ok(WasmValue::F32(v as f32)),
            WasmType::F64 => Ok(WasmValue::F64(v)),
            WasmType::I32 | WasmType::I64 => Err(NotOne),
        }
    }
}

impl ser::Serializer for OneArg {
    type Ok = WasmValue;
    type Error = NotOne;
    type SerializeSeq = Impossible<WasmValue, NotOne>;
    type SerializeTuple = Impossible<WasmValue, NotOne>;
    type SerializeTupleStruct = Impossible<WasmValue, NotOne>;
    type SerializeTupleVariant = Impossible<WasmValue, NotOne>;
    type SerializeMap = Impossible<WasmValue, NotOne>;
    type SerializeStruct = Impossible<WasmValue, NotOne>;
    type SerializeStructVariant = Impossible<WasmValue, NotOne>;

    #[inline]
    fn serialize_i8(self, v: i8) -> Result<WasmValue, NotOne> {
        self.int(v.into())
    }
    #[inline]
    fn serialize_i16(self, v: i16) -> Result<WasmValue, NotOne> {
        self.int(v.into())
    }
    #[inline]
    fn serialize_i32(self, v: i32) -> Result<WasmValue, NotOne> {
        self.int(v.into())
    }
    #[inline]
    fn serialize_i64(self, v: i64) -> Result<WasmValue, NotOne> {
        self.int(v.into())
    }
    #[inline]
    fn serialize_i128(self, v: i128) -> Result<WasmValue, NotOne> {
        self.int(v)
    }
    #[inline]
    fn serialize_u8(self, v: u8) -> Result<WasmValue, NotOne> {
        self.int(v.into())
    }
    #[inline]
    fn serialize_u16(self, v: u16) -> Result<WasmValue, NotOne> {
        self.int(v.into())
    }
    #[inline]
    fn serialize_u32(self, v: u32) -> Result<WasmValue, NotOne> {
        self.int(v.into())
    }
    #[inline]
    fn serialize_u64(self, v: u64) -> Result<WasmValue, NotOne> {
        self.int(v.into())
    }
    #[inline]
    fn serialize_f32(self, v: f32) -> Result<WasmValue, NotOne> {
        self.float(v.into())
    }
    #[inline]
    fn serialize_f64(self, v: f64) -> Result<WasmValue, NotOne> {
        self.float(v)
    }
    #[inline]
    fn serialize_some<T: Serialize + ?Sized>(self, v: &T) -> Result<WasmValue, NotOne> {
        v.serialize(self)
    }
    #[inline]
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        v: &T,
    ) -> Result<WasmValue, NotOne> {
        v.serialize(self)
    }
    fn serialize_bool(self, _: bool) -> Result<WasmValue, NotOne> {
        Err(NotOne)
    }
    fn serialize_char(self, _: char) -> Result<WasmValue, NotOne> {
        Err(NotOne)
    }
    fn serialize_str(self, _: &str) -> Result<WasmValue, NotOne> {
        Err(NotOne)
    }
    fn serialize_bytes(self, _: &[u8]) -> Result<WasmValue, NotOne> {
        Err(NotOne)
    }
    fn serialize_none(self) -> Result<WasmValue, NotOne> {
        Err(NotOne)
    }
    fn serialize_unit(self) -> Result<WasmValue, NotOne> {
        Err(NotOne)
    }
    fn serialize_unit_struct(self, _: &'static str) -> Result<WasmValue, NotOne> {
        Err(NotOne)
    }
    fn serialize_unit_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
    ) -> Result<WasmValue, NotOne> {
        Err(NotOne)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: &T,
    ) -> Result<WasmValue, NotOne> {
        Err(NotOne)
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Self::SerializeSeq, NotOne> {
        Err(NotOne)
    }
    fn serialize_tuple(self, _: usize) -> Result<Self::SerializeTuple, NotOne> {
        Err(NotOne)
    }
    fn serialize_tuple_struct(
        self,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleStruct, NotOne> {
        Err(NotOne)
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleVariant, NotOne> {
        Err(NotOne)
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Self::SerializeMap, NotOne> {
        Err(NotOne)
    }
    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Self::SerializeStruct, NotOne> {
        Err(NotOne)
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStructVariant, NotOne> {
        Err(NotOne)
    }
}

/// Deserializes a task's results as `O`.
#[inline]
pub(crate) fn from_results<'de, O: de::Deserialize<'de>>(
    values: &'de [WasmValue],
) -> Result<O, NumericError> {
    O::deserialize(ResultsDeserializer { values })
}

struct ResultsDeserializer<'a> {
    values: &'a [WasmValue],
}

#[inline]
fn visit_one<'de, V: Visitor<'de>>(v: WasmValue, visitor: V) -> Result<V::Value, NumericError> {
    match v {
        WasmValue::I32(x) => visitor.visit_i32(x),
        WasmValue::I64(x) => visitor.visit_i64(x),
        WasmValue::F32(x) => visitor.visit_f32(x),
        WasmValue::F64(x) => visitor.visit_f64(x),
    }
}

impl<'de> de::Deserializer<'de> for ResultsDeserializer<'de> {
    type Error = NumericError;

    #[inline]
    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, NumericError> {
        match self.values {
            [] => visitor.visit_unit(),
            [one] => visit_one(*one, visitor),
            many => visitor.visit_seq(Seq { iter: many.iter() }),
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, NumericError> {
        if self.values.is_empty() {
            visitor.visit_none()
        } else {
            visitor.visit_some(self)
        }
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, NumericError> {
        visitor.visit_seq(Seq {
            iter: self.values.iter(),
        })
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        _: usize,
        visitor: V,
    ) -> Result<V::Value, NumericError> {
        self.deserialize_seq(visitor)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf unit unit_struct
        newtype_struct tuple_struct map struct enum identifier ignored_any
    }
}

struct Seq<'a> {
    iter: std::slice::Iter<'a, WasmValue>,
}

impl<'de> de::SeqAccess<'de> for Seq<'de> {
    type Error = NumericError;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, NumericError> {
        match self.iter.next() {
            None => Ok(None),
            Some(v) => seed
                .deserialize(ResultsDeserializer {
                    values: std::slice::from_ref(v),
                })
                .map(Some),
        }
    }
}

#[cfg(test)]
mod test {
    use super::*;

    fn args(params: &[WasmType], json: &str) -> Result<Vec<WasmValue>, String> {
        let value: serde_json::Value = serde_json::from_str(json).unwrap();
        to_args(params, &value).map(|v| v.to_vec()).map_err(|e| e.0)
    }

    #[test]
    fn integers_are_taken_exactly_or_refused_saying_why() {
        use WasmType::{F64, I32, I64};
        assert_eq!(
            args(&[I32], "-2147483648"),
            Ok(vec![WasmValue::I32(i32::MIN)])
        );
        assert_eq!(args(&[I32], "4294967295"), Ok(vec![WasmValue::I32(-1)]));
        assert_eq!(
            args(&[I64], "18446744073709551615"),
            Ok(vec![WasmValue::I64(-1)])
        );
        let err = args(&[I32], "4294967296").unwrap_err();
        assert!(
            err.starts_with("4294967296 is out of range for the i32 parameter, which takes -2147483648 to 4294967295"),
            "{err}"
        );
        assert!(
            args(&[I32], "-2147483649")
                .unwrap_err()
                .contains("out of range")
        );
        let err = args(&[I64, I32], "[1, 1e3]").unwrap_err();
        assert_eq!(
            err,
            "parameter 2 (i32) takes an integer, and 1000.0 is a floating-point number \
             (written with a fraction or an exponent, such as 1e3 or 1000.0): write it as 1000"
        );
        assert!(
            args(&[I64], "1000.0")
                .unwrap_err()
                .contains("write it as 1000")
        );
        assert_eq!(
            args(&[I64], "1.5").unwrap_err(),
            "the i64 parameter takes an integer, and 1.5 is not one"
        );
        let huge = "1".repeat(40);
        assert!(
            args(&[I64], &huge).unwrap_err().contains("out of range"),
            "{huge}"
        );
        assert_eq!(args(&[F64], "1e3"), Ok(vec![WasmValue::F64(1000.0)]));
        // The lone-number path agrees with the general one, or leaves it
        // the input.
        for ty in [WasmType::I32, I64, WasmType::F32, F64] {
            for json in [
                "0",
                "-1",
                "4294967295",
                "4294967296",
                "-2147483649",
                "18446744073709551615",
                "-9223372036854775809",
                "1.5",
                "1e3",
                "null",
                "[1]",
                "\"1\"",
                "true",
            ] {
                let value: serde_json::Value = serde_json::from_str(json).unwrap();
                if let Some(one) = to_one_arg(ty, &value) {
                    assert_eq!(args(&[ty], json), Ok(vec![one]), "{ty} {json}");
                }
            }
        }
        assert_eq!(to_one_arg(I64, &7u64), Some(WasmValue::I64(7)));
        assert_eq!(to_one_arg(I64, &Some(-7i32)), Some(WasmValue::I64(-7)));
        assert_eq!(to_one_arg(WasmType::I32, &u64::MAX), None);
        assert_eq!(to_one_arg(I64, &[7u64]), None);
        assert_eq!(args(&[F64], "7"), Ok(vec![WasmValue::F64(7.0)]));
    }
}
