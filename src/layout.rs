//! A row kernel's layout as data ([`RowLayout`]): how many invocations a workgroup has, how
//! many of them share a row, how many parts a row is split into, and the form of a lane's
//! pass over its elements (element by element, or in tiles), and how many of its octets a
//! lane loads ahead. The rule ([`crate::plan::row_layout`], [`crate::plan::row_parts`])
//! picks one from the device and the shape;
//! `XENT_LAYOUT=WGxLANES[xSTEPS][/PARTS][+tile]` or [`crate::Recorder::set_layout`] pins
//! one, which is how `xent bench --sweep` times every candidate and how a choice is
//! reproduced.
//!
//! The layout changes the order in which a row's elements are added, and so the last bits
//! of a result: for one layout the bits are the same run after run, and the layout a job
//! ran with is reported (the JSON's `layout`).

use std::fmt;
use std::str::FromStr;

use crate::error::{Error, Result};

/// Invocations a workgroup, lanes a row (`workgroup / lanes` rows a workgroup), octets a
/// lane loads ahead, parts a row (1: not split) and the tile form.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RowLayout {
    /// Invocations of a workgroup: a power of two.
    pub workgroup: u32,
    /// Invocations that share a row: a power of two, at most `workgroup`.
    pub lanes: u32,
    /// Octets (eight elements) a lane loads a step, all before the math of any (1 or 2): with
    /// 2, more loads in flight a lane. A lane meets its elements in the same order either way,
    /// so this changes no bits.
    pub steps: u32,
    /// Parts a row is split into across workgroups (the kernels that split; 1: none).
    pub parts: u32,
    /// The tile form of the online max-and-sum (log-sum-exp, softmax, JSD, distillation, KL
    /// of logits against probabilities; [`crate::Op::has_tile_form`]): each lane takes the
    /// max of its eight elements first, then their eight exponentials, which wait on that max
    /// alone, rescaling its running sum at most once. Without it, each element's exponential
    /// waits on the one before. The same results within rounding, in other last bits.
    pub tile: bool,
}

impl RowLayout {
    /// A layout of one octet a step, checked: powers of two with `lanes ≤ workgroup ≤ 1024`,
    /// `parts` in `1..=1024`.
    pub fn new(workgroup: u32, lanes: u32, parts: u32) -> Result<RowLayout> {
        let bad = |detail: String| Err(Error::Option { name: "layout", detail });
        if !workgroup.is_power_of_two() || workgroup > 1024 {
            return bad(format!("a workgroup of {workgroup} is not a power of two up to 1024"));
        }
        if !lanes.is_power_of_two() || lanes > workgroup {
            return bad(format!("{lanes} lanes a row is not a power of two up to the workgroup's {workgroup}"));
        }
        if !(1..=1024).contains(&parts) {
            return bad(format!("{parts} parts a row is not in 1..=1024"));
        }
        Ok(RowLayout { workgroup, lanes, steps: 1, parts, tile: false })
    }

    /// This layout with `steps` octets a lane a step: `Err` unless 1 or 2.
    pub fn stepping(self, steps: u32) -> Result<RowLayout> {
        if !(1..=2).contains(&steps) {
            return Err(Error::Option { name: "layout", detail: format!("{steps} octets a step is not 1 or 2") });
        }
        Ok(RowLayout { steps, ..self })
    }

    /// This layout in the tile form (`true`) or element by element.
    pub fn tiled(self, tile: bool) -> RowLayout {
        RowLayout { tile, ..self }
    }

    /// This layout as `op`'s kernels run it: element by element where they have no tile form
    /// ([`crate::Op::has_tile_form`]), which is how it is reported.
    pub fn as_run_by(self, op: &crate::Op) -> RowLayout {
        self.tiled(self.tile && op.has_tile_form())
    }

    /// The layout `XENT_LAYOUT` pins, if it is set: `Err` naming the variable where its
    /// value is not a layout.
    pub fn from_env() -> Result<Option<RowLayout>> {
        match std::env::var("XENT_LAYOUT") {
            Ok(v) if !v.is_empty() => v.parse().map(Some).map_err(|e| match e {
                Error::Option { detail, .. } => Error::Option { name: "XENT_LAYOUT", detail },
                e => e,
            }),
            _ => Ok(None),
        }
    }
}

/// `WGxLANES`, `xSTEPS` where a lane loads more than one octet a step, `/PARTS` where a row
/// is split and `+tile` in the tile form: `64x8`, `64x8x2`, `256x256/4`, `8x1+tile`.
impl fmt::Display for RowLayout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}x{}", self.workgroup, self.lanes)?;
        if self.steps > 1 {
            write!(f, "x{}", self.steps)?;
        }
        if self.parts > 1 {
            write!(f, "/{}", self.parts)?;
        }
        if self.tile {
            write!(f, "+tile")?;
        }
        Ok(())
    }
}

impl FromStr for RowLayout {
    type Err = Error;

    fn from_str(s: &str) -> Result<RowLayout> {
        let bad = || Error::Option { name: "layout", detail: format!("{s:?} is not WGxLANES[xSTEPS][/PARTS][+tile]") };
        let (s, tile) = match s.strip_suffix("+tile") {
            Some(rest) => (rest, true),
            None => (s, false),
        };
        let (shape, parts) = match s.split_once('/') {
            Some((shape, parts)) => (shape, parts.trim().parse().map_err(|_| bad())?),
            None => (s, 1),
        };
        let number = |v: &str| v.trim().parse::<u32>().map_err(|_| bad());
        let (wg, lanes, steps) = match shape.split('x').collect::<Vec<_>>()[..] {
            [wg, lanes] => (number(wg)?, number(lanes)?, 1),
            [wg, lanes, steps] => (number(wg)?, number(lanes)?, number(steps)?),
            _ => return Err(bad()),
        };
        Ok(RowLayout::new(wg, lanes, parts)?.stepping(steps)?.tiled(tile))
    }
}

#[cfg(test)]
mod tests {
    use super::RowLayout;

    #[test]
    fn layouts_parse_print_and_check() {
        for s in ["64x8", "256x256/4", "1x1", "1024x32", "8x1+tile", "256x32/4+tile", "64x8x2", "32x32x2/4+tile"] {
            assert_eq!(s.parse::<RowLayout>().unwrap().to_string(), s);
        }
        let plain = RowLayout { workgroup: 64, lanes: 8, steps: 1, parts: 1, tile: false };
        assert_eq!("64x8/1".parse::<RowLayout>().unwrap(), plain);
        assert_eq!("64x8x1/1".parse::<RowLayout>().unwrap(), plain);
        assert_eq!("64x8/1+tile".parse::<RowLayout>().unwrap(), plain.tiled(true));
        assert_eq!("64x8x2+tile".parse::<RowLayout>().unwrap(), RowLayout { steps: 2, tile: true, ..plain });
        let bad = ["", "64", "64x", "x8", "63x8", "64x128", "64x3", "2048x8", "64x8/0", "64x8/x", "-64x8"];
        let bad = bad.into_iter().chain(["64x8x0", "64x8x3", "64x8x", "64x8x2x2", "64xx8"]);
        for bad in bad.into_iter().chain(["+tile", "64x8+", "64x8+tiles", "64x8+tile+tile", "64x8+tile/4"]) {
            assert!(bad.parse::<RowLayout>().is_err(), "{bad}");
        }
    }
}
