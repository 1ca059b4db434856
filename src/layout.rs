//! A row kernel's layout as data ([`RowLayout`]): how many invocations a workgroup has, how
//! many of them share a row, and how many parts a row is split into. The rule
//! ([`crate::plan::row_layout`], [`crate::plan::row_parts`]) picks one from the device and
//! the shape; `XENT_LAYOUT=WGxLANES[/PARTS]` or [`crate::Recorder::set_layout`] pins one,
//! which is how `xent bench --sweep` times every candidate and how a choice is reproduced.
//!
//! The layout changes the order in which a row's elements are added, and so the last bits
//! of a result: for one layout the bits are the same run after run, and the layout a job
//! ran with is reported (the JSON's `layout`).

use std::fmt;
use std::str::FromStr;

use crate::error::{Error, Result};

/// Invocations a workgroup, lanes a row (`workgroup / lanes` rows a workgroup) and parts a
/// row (1: not split).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RowLayout {
    /// Invocations of a workgroup: a power of two.
    pub workgroup: u32,
    /// Invocations that share a row: a power of two, at most `workgroup`.
    pub lanes: u32,
    /// Parts a row is split into across workgroups (the kernels that split; 1: none).
    pub parts: u32,
}

impl RowLayout {
    /// A layout, checked: powers of two with `lanes ≤ workgroup ≤ 1024`, `parts` in
    /// `1..=1024`.
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
        Ok(RowLayout { workgroup, lanes, parts })
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

/// `WGxLANES`, and `/PARTS` where a row is split: `64x8`, `256x256/4`.
impl fmt::Display for RowLayout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}x{}", self.workgroup, self.lanes)?;
        if self.parts > 1 {
            write!(f, "/{}", self.parts)?;
        }
        Ok(())
    }
}

impl FromStr for RowLayout {
    type Err = Error;

    fn from_str(s: &str) -> Result<RowLayout> {
        let bad = || Error::Option { name: "layout", detail: format!("{s:?} is not WGxLANES or WGxLANES/PARTS") };
        let (shape, parts) = match s.split_once('/') {
            Some((shape, parts)) => (shape, parts.trim().parse().map_err(|_| bad())?),
            None => (s, 1),
        };
        let (wg, lanes) = shape.split_once('x').ok_or_else(bad)?;
        let number = |v: &str| v.trim().parse::<u32>().map_err(|_| bad());
        RowLayout::new(number(wg)?, number(lanes)?, parts)
    }
}

#[cfg(test)]
mod tests {
    use super::RowLayout;

    #[test]
    fn layouts_parse_print_and_check() {
        for s in ["64x8", "256x256/4", "1x1", "1024x32"] {
            assert_eq!(s.parse::<RowLayout>().unwrap().to_string(), s);
        }
        assert_eq!("64x8/1".parse::<RowLayout>().unwrap(), RowLayout { workgroup: 64, lanes: 8, parts: 1 });
        for bad in ["", "64", "64x", "x8", "63x8", "64x128", "64x3", "2048x8", "64x8/0", "64x8/x", "-64x8"] {
            assert!(bad.parse::<RowLayout>().is_err(), "{bad}");
        }
    }
}
