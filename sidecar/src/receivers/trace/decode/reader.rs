//! The msgpack cursor the trace decoders walk bodies with: lenient reads of
//! markers, lengths, strings and numbers (PROTOCOLS.md §1).

use rmp::Marker;

use super::interner::{lossy, Interner};
use super::DecodeError;
use crate::telemetry::Str;

/// A msgpack cursor over a byte slice.
pub(super) struct Reader<'a> {
    pub(super) buf: &'a [u8],
    pub(super) pos: usize,
}

impl<'a> Reader<'a> {
    pub(super) fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    /// A capacity for `len` declared items that the remaining bytes could
    /// hold (every item takes at least one byte).
    pub(super) fn capacity(&self, len: u32) -> usize {
        (len as usize).min(self.buf.len() - self.pos)
    }

    pub(super) fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let end = self.pos.checked_add(n).ok_or(DecodeError::Truncated)?;
        let bytes = self.buf.get(self.pos..end).ok_or(DecodeError::Truncated)?;
        self.pos = end;
        Ok(bytes)
    }

    pub(super) fn marker(&mut self) -> Result<Marker, DecodeError> {
        let byte = *self.buf.get(self.pos).ok_or(DecodeError::Truncated)?;
        self.pos += 1;
        Ok(Marker::from_u8(byte))
    }

    pub(super) fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }

    pub(super) fn u16(&mut self) -> Result<u16, DecodeError> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    pub(super) fn u32(&mut self) -> Result<u32, DecodeError> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub(super) fn u64(&mut self) -> Result<u64, DecodeError> {
        let b = self.take(8)?;
        Ok(u64::from_be_bytes([
            b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7],
        ]))
    }

    /// An array header; `None` for nil. Anything else is `NotTraces`, which
    /// callers turn into the error of their level.
    pub(super) fn array_len(&mut self) -> Result<Option<u32>, DecodeError> {
        match self.marker()? {
            Marker::FixArray(n) => Ok(Some(u32::from(n))),
            Marker::Array16 => Ok(Some(u32::from(self.u16()?))),
            Marker::Array32 => Ok(Some(self.u32()?)),
            Marker::Null => Ok(None),
            _ => Err(DecodeError::NotTraces),
        }
    }

    /// A map header; `None` for nil; other types are an error.
    pub(super) fn map_len(&mut self) -> Result<Option<u32>, DecodeError> {
        match self.marker()? {
            Marker::FixMap(n) => Ok(Some(u32::from(n))),
            Marker::Map16 => Ok(Some(u32::from(self.u16()?))),
            Marker::Map32 => Ok(Some(self.u32()?)),
            Marker::Null => Ok(None),
            _ => Err(DecodeError::SpanNotMap),
        }
    }

    /// A map header; a value of any other type is skipped and read as `None`.
    pub(super) fn map_len_or_skip(&mut self) -> Result<Option<u32>, DecodeError> {
        let start = self.pos;
        match self.map_len() {
            Err(DecodeError::SpanNotMap) => {
                self.pos = start;
                self.skip()?;
                Ok(None)
            }
            other => other,
        }
    }

    /// The bytes of a str or bin; `None` (the value consumed) for any other type.
    pub(super) fn str_bytes(&mut self) -> Result<Option<&'a [u8]>, DecodeError> {
        let start = self.pos;
        let len = match self.marker()? {
            Marker::FixStr(n) => usize::from(n),
            Marker::Str8 | Marker::Bin8 => usize::from(self.u8()?),
            Marker::Str16 | Marker::Bin16 => usize::from(self.u16()?),
            Marker::Str32 | Marker::Bin32 => self.u32()? as usize,
            _ => {
                self.pos = start;
                self.skip()?;
                return Ok(None);
            }
        };
        self.take(len).map(Some)
    }

    /// A string field of a v0.4 span at position `slot`: interned; nil or
    /// another type reads as "".
    pub(super) fn string(
        &mut self,
        interner: &mut Interner,
        slot: usize,
    ) -> Result<Str, DecodeError> {
        Ok(match self.str_bytes()? {
            Some(bytes) => interner.intern_at(slot, bytes),
            None => Str::default(),
        })
    }

    /// A v0.5 string: an index into the table (or, leniently, an inline string).
    pub(super) fn indexed(&mut self, table: &[Str]) -> Result<Str, DecodeError> {
        let start = self.pos;
        match self.marker()? {
            Marker::FixStr(_)
            | Marker::Str8
            | Marker::Str16
            | Marker::Str32
            | Marker::Bin8
            | Marker::Bin16
            | Marker::Bin32 => {
                self.pos = start;
                Ok(self.str_bytes()?.map(lossy).unwrap_or_default())
            }
            _ => {
                self.pos = start;
                let index = match self.number()? {
                    Number::Uint(u) => u,
                    Number::Int(i) => u64::try_from(i).map_err(|_| DecodeError::BadStringIndex)?,
                    Number::Float(_) | Number::Other => return Err(DecodeError::BadStringIndex),
                    Number::Nil => return Ok(Str::default()),
                };
                let index = usize::try_from(index).map_err(|_| DecodeError::BadStringIndex)?;
                table.get(index).cloned().ok_or(DecodeError::BadStringIndex)
            }
        }
    }

    pub(super) fn number(&mut self) -> Result<Number, DecodeError> {
        let start = self.pos;
        Ok(match self.marker()? {
            Marker::FixPos(n) => Number::Uint(u64::from(n)),
            Marker::FixNeg(n) => Number::Int(i64::from(n)),
            Marker::U8 => Number::Uint(u64::from(self.u8()?)),
            Marker::U16 => Number::Uint(u64::from(self.u16()?)),
            Marker::U32 => Number::Uint(u64::from(self.u32()?)),
            Marker::U64 => Number::Uint(self.u64()?),
            Marker::I8 => Number::Int(i64::from(self.u8()? as i8)),
            Marker::I16 => Number::Int(i64::from(self.u16()? as i16)),
            Marker::I32 => Number::Int(i64::from(self.u32()? as i32)),
            Marker::I64 => Number::Int(self.u64()? as i64),
            Marker::F32 => Number::Float(f64::from(f32::from_bits(self.u32()?))),
            Marker::F64 => Number::Float(f64::from_bits(self.u64()?)),
            Marker::Null => Number::Nil,
            Marker::True => Number::Uint(1),
            Marker::False => Number::Uint(0),
            _ => {
                self.pos = start;
                self.skip()?;
                Number::Other
            }
        })
    }

    /// Any number as u64 (negatives wrap, as Go's int64 → uint64 ids do).
    pub(super) fn uint(&mut self) -> Result<u64, DecodeError> {
        Ok(match self.number()? {
            Number::Uint(u) => u,
            Number::Int(i) => i as u64,
            Number::Float(f) => f as u64,
            Number::Nil | Number::Other => 0,
        })
    }

    /// Any number as i64 (saturating).
    pub(super) fn int(&mut self) -> Result<i64, DecodeError> {
        Ok(match self.number()? {
            Number::Uint(u) => i64::try_from(u).unwrap_or(i64::MAX),
            Number::Int(i) => i,
            Number::Float(f) => f as i64,
            Number::Nil | Number::Other => 0,
        })
    }

    /// Any number as f64; `None` for nil and other types.
    pub(super) fn float(&mut self) -> Result<Option<f64>, DecodeError> {
        Ok(match self.number()? {
            Number::Uint(u) => Some(u as f64),
            Number::Int(i) => Some(i as f64),
            Number::Float(f) => Some(f),
            Number::Nil | Number::Other => None,
        })
    }

    /// Skips one value of any type, nested ones included. Iterative, so a
    /// deeply nested payload cannot overflow the stack.
    pub(super) fn skip(&mut self) -> Result<(), DecodeError> {
        let mut pending: u64 = 1;
        while pending > 0 {
            pending -= 1;
            let skip = match self.marker()? {
                Marker::FixPos(_)
                | Marker::FixNeg(_)
                | Marker::Null
                | Marker::True
                | Marker::False => 0,
                Marker::U8 | Marker::I8 => 1,
                Marker::U16 | Marker::I16 => 2,
                Marker::U32 | Marker::I32 | Marker::F32 => 4,
                Marker::U64 | Marker::I64 | Marker::F64 => 8,
                Marker::FixStr(n) => usize::from(n),
                Marker::Str8 | Marker::Bin8 => usize::from(self.u8()?),
                Marker::Str16 | Marker::Bin16 => usize::from(self.u16()?),
                Marker::Str32 | Marker::Bin32 => self.u32()? as usize,
                Marker::FixArray(n) => {
                    pending += u64::from(n);
                    0
                }
                Marker::Array16 => {
                    pending += u64::from(self.u16()?);
                    0
                }
                Marker::Array32 => {
                    pending += u64::from(self.u32()?);
                    0
                }
                Marker::FixMap(n) => {
                    pending += 2 * u64::from(n);
                    0
                }
                Marker::Map16 => {
                    pending += 2 * u64::from(self.u16()?);
                    0
                }
                Marker::Map32 => {
                    pending += 2 * u64::from(self.u32()?);
                    0
                }
                Marker::FixExt1 => 2,
                Marker::FixExt2 => 3,
                Marker::FixExt4 => 5,
                Marker::FixExt8 => 9,
                Marker::FixExt16 => 17,
                Marker::Ext8 => usize::from(self.u8()?) + 1,
                Marker::Ext16 => usize::from(self.u16()?) + 1,
                Marker::Ext32 => (self.u32()? as usize).saturating_add(1),
                Marker::Reserved => return Err(DecodeError::BadMarker),
            };
            self.take(skip)?;
            // Every pending value takes at least one byte: more pending
            // values than bytes left means the payload is truncated, and
            // stopping now keeps a forged header from spinning for 2^32 rounds.
            if pending > (self.buf.len() - self.pos) as u64 {
                return Err(DecodeError::Truncated);
            }
        }
        Ok(())
    }
}

/// A msgpack scalar read leniently.
pub(super) enum Number {
    Uint(u64),
    Int(i64),
    Float(f64),
    Nil,
    /// A value of another type, already skipped.
    Other,
}
