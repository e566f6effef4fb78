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

    fn int(&mut self, v: i128) -> Result<(), NumericError> {
        let ty = self.next_type()?;
        let range = |lo: i128, hi: i128| {
            if v < lo || v > hi {
                Err(NumericError(format!(
                    "{v} is out of range for an {ty} parameter"
                )))
            } else {
                Ok(v)
            }
        };
        let value = match ty {
            WasmType::I32 => WasmValue::I32(range(i32::MIN.into(), u32::MAX.into())? as u32 as i32),
            WasmType::I64 => WasmValue::I64(range(i64::MIN.into(), u64::MAX.into())? as u64 as i64),
            WasmType::F32 => WasmValue::F32(v as f32),
            WasmType::F64 => WasmValue::F64(v as f64),
        };
        self.out.0.push(value);
        Ok(())
    }

    fn float(&mut self, v: f64) -> Result<(), NumericError> {
        let ty = self.next_type()?;
        let value = match ty {
            WasmType::F32 => WasmValue::F32(v as f32),
            WasmType::F64 => WasmValue::F64(v),
            _ => {
                return Err(NumericError(format!(
                    "expected an integer for an {ty} parameter, got {v}"
                )));
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

/// Deserializes a task's results as `O`.
pub(crate) fn from_results<'de, O: de::Deserialize<'de>>(
    values: &'de [WasmValue],
) -> Result<O, NumericError> {
    O::deserialize(ResultsDeserializer { values })
}

struct ResultsDeserializer<'a> {
    values: &'a [WasmValue],
}

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
