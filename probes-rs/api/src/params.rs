//! The legacy probe `param` string (V1 getopt letters, docs/compat.md §3).
//!
//! `-t 5 -T 100 -w /etc/whitelist` and so on. Unknown letters and bad numbers
//! are errors that name the option, so a typo in a config is caught at start.

use std::time::Duration;

/// Parsed probe parameters, with the legacy defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Params {
    /// `-t`: report period in seconds (default 5, at least 1).
    pub period: u32,
    /// `-s`: sampling period in ms (default 100).
    pub sample_period: u32,
    /// `-T`: latency threshold.
    pub latency_thr: u32,
    /// `-J`: jitter threshold.
    pub jitter_thr: u32,
    /// `-O`: offline threshold.
    pub offline_thr: u32,
    /// `-D`: drops-count threshold.
    pub drops_count_thr: u32,
    /// `-F <pid>`: only this pid; `-F task` sets `filter_task_probe`.
    pub filter_pid: u32,
    /// `-F task`: filter by the task probe's process list.
    pub filter_task_probe: bool,
    /// `-P`: bitmask of sub-probes to load (default all bits).
    pub load_probe: u32,
    /// `-l`: the probe may print its debug logs.
    pub logs: bool,
    /// `-U`: resource usage upper bound, percent.
    pub res_percent_upper: u8,
    /// `-L`: resource usage lower bound, percent.
    pub res_percent_lower: u8,
    /// `-c`: client-port flag.
    pub cport_flag: u8,
    /// `-C`: cycle-sampling flag.
    pub cycle_sampling_flag: u8,
    /// `-d`: target device (at most 31 bytes).
    pub target_dev: String,
    /// `-p`: ELF path (at most 511 bytes).
    pub elf_path: String,
    /// `-w`: task whitelist path (at most 511 bytes).
    pub task_whitelist: String,
    /// `-n`: network card list (at most 511 bytes).
    pub netcard_list: String,
    /// `-m`: target comm (at most 16 bytes).
    pub target_comm: String,
}

impl Default for Params {
    fn default() -> Self {
        Self {
            period: 5,
            sample_period: 100,
            latency_thr: 0,
            jitter_thr: 0,
            offline_thr: 0,
            drops_count_thr: 0,
            filter_pid: 0,
            filter_task_probe: false,
            load_probe: 0xFFFF_FFFF,
            logs: false,
            res_percent_upper: 0,
            res_percent_lower: 0,
            cport_flag: 0,
            cycle_sampling_flag: 0,
            target_dev: String::new(),
            elf_path: String::new(),
            task_whitelist: String::new(),
            netcard_list: String::new(),
            target_comm: String::new(),
        }
    }
}

/// A `param` string that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParamsError {
    /// An option letter the legacy agent did not know.
    #[error("unknown option `{0}` (expected one of -t -s -T -J -O -D -F -P -l -U -L -c -C -d -p -w -n -m)")]
    UnknownOption(String),
    /// An option given without its value.
    #[error("option `{0}` needs a value")]
    MissingValue(String),
    /// A value that is not what the option takes.
    #[error("option `{opt}`: `{value}` is not {expected}")]
    BadValue {
        /// The option, e.g. `-t`.
        opt: String,
        /// What was given.
        value: String,
        /// What was expected.
        expected: &'static str,
    },
}

impl Params {
    /// The report period as a duration.
    pub fn period(&self) -> Duration {
        Duration::from_secs(u64::from(self.period.max(1)))
    }

    /// Parses a legacy `param` string, starting from the defaults.
    pub fn parse(s: &str) -> Result<Self, ParamsError> {
        let mut p = Self::default();
        let mut words = s.split_whitespace();
        while let Some(w) = words.next() {
            let Some(letter) = w.strip_prefix('-').filter(|l| !l.is_empty()) else {
                return Err(ParamsError::UnknownOption(w.to_string()));
            };
            // getopt allows the value glued to the letter: `-t5`.
            let (opt, glued) = letter.split_at(1);
            let opt_name = format!("-{opt}");
            let mut value = || -> Result<String, ParamsError> {
                if glued.is_empty() {
                    words
                        .next()
                        .map(str::to_string)
                        .ok_or_else(|| ParamsError::MissingValue(opt_name.clone()))
                } else {
                    Ok(glued.to_string())
                }
            };
            match opt {
                "t" => p.period = num(&opt_name, &value()?, 1, 3600)?,
                "s" => p.sample_period = num(&opt_name, &value()?, 1, u32::MAX)?,
                "T" => p.latency_thr = num(&opt_name, &value()?, 0, u32::MAX)?,
                "J" => p.jitter_thr = num(&opt_name, &value()?, 0, u32::MAX)?,
                "O" => p.offline_thr = num(&opt_name, &value()?, 0, u32::MAX)?,
                "D" => p.drops_count_thr = num(&opt_name, &value()?, 0, u32::MAX)?,
                "F" => {
                    let v = value()?;
                    if v == "task" {
                        p.filter_task_probe = true;
                    } else {
                        p.filter_pid = num(&opt_name, &v, 0, u32::MAX)?;
                    }
                }
                "P" => p.load_probe = num(&opt_name, &value()?, 0, u32::MAX)?,
                "l" => {
                    let v = value()?;
                    p.logs = v != "0";
                }
                "U" => p.res_percent_upper = percent(&opt_name, &value()?)?,
                "L" => p.res_percent_lower = percent(&opt_name, &value()?)?,
                "c" => p.cport_flag = flag(&opt_name, &value()?)?,
                "C" => p.cycle_sampling_flag = flag(&opt_name, &value()?)?,
                "d" => p.target_dev = bounded(&opt_name, value()?, 31)?,
                "p" => p.elf_path = bounded(&opt_name, value()?, 511)?,
                "w" => p.task_whitelist = bounded(&opt_name, value()?, 511)?,
                "n" => p.netcard_list = bounded(&opt_name, value()?, 511)?,
                "m" => p.target_comm = bounded(&opt_name, value()?, 16)?,
                _ => return Err(ParamsError::UnknownOption(w.to_string())),
            }
        }
        Ok(p)
    }
}

/// `param` with option `-<opt>` set to `value`: every earlier `-<opt>`
/// (with its value, glued or not) is removed and `-<opt> <value>` appended,
/// the other options kept as written. The result is checked by
/// [`Params::parse`], so a value the option does not take is an error
/// naming it.
pub fn set_option(param: &str, opt: char, value: &str) -> Result<String, ParamsError> {
    Params::parse(param)?;
    let mut kept: Vec<&str> = Vec::new();
    let mut words = param.split_whitespace();
    while let Some(w) = words.next() {
        // Every option takes a value: `-t5` or `-t 5`.
        let glued = w.len() > 2;
        if w.strip_prefix('-').and_then(|l| l.chars().next()) == Some(opt) {
            if !glued {
                words.next();
            }
            continue;
        }
        kept.push(w);
        if !glued {
            if let Some(v) = words.next() {
                kept.push(v);
            }
        }
    }
    let mut out = kept.join(" ");
    if !out.is_empty() {
        out.push(' ');
    }
    out.push('-');
    out.push(opt);
    out.push(' ');
    out.push_str(value);
    Params::parse(&out)?;
    Ok(out)
}

fn num(opt: &str, v: &str, min: u32, max: u32) -> Result<u32, ParamsError> {
    let bad = |expected| ParamsError::BadValue {
        opt: opt.into(),
        value: v.into(),
        expected,
    };
    let n: u32 = v.parse().map_err(|_| bad("a whole number"))?;
    if n < min || n > max {
        return Err(bad(if min == 1 {
            "a number from 1 to 3600"
        } else {
            "in range"
        }));
    }
    Ok(n)
}

fn percent(opt: &str, v: &str) -> Result<u8, ParamsError> {
    match v.parse::<u8>() {
        Ok(n) if n <= 100 => Ok(n),
        _ => Err(ParamsError::BadValue {
            opt: opt.into(),
            value: v.into(),
            expected: "a percentage 0..100",
        }),
    }
}

fn flag(opt: &str, v: &str) -> Result<u8, ParamsError> {
    match v {
        "0" => Ok(0),
        "1" => Ok(1),
        _ => Err(ParamsError::BadValue {
            opt: opt.into(),
            value: v.into(),
            expected: "0 or 1",
        }),
    }
}

fn bounded(opt: &str, v: String, max: usize) -> Result<String, ParamsError> {
    if v.len() > max {
        return Err(ParamsError::BadValue {
            opt: opt.into(),
            value: v,
            expected: "short enough for the legacy field",
        });
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_option_replaces_the_letter_and_keeps_the_rest() {
        assert_eq!(set_option("", 't', "10").as_deref(), Ok("-t 10"));
        assert_eq!(
            set_option("-t5 -w /etc/w -t 7 -T 100", 't', "30").as_deref(),
            Ok("-w /etc/w -T 100 -t 30")
        );
        assert_eq!(
            Params::parse(&set_option("-F task -l 1", 'U', "80").expect("valid"))
                .expect("parses")
                .res_percent_upper,
            80
        );
        assert!(matches!(
            set_option("-t 5", 'U', "120"),
            Err(ParamsError::BadValue { .. })
        ));
        assert!(set_option("-x 1", 't', "5").is_err());
    }

    #[test]
    fn defaults_match_legacy() {
        let p = Params::parse("").expect("empty param");
        assert_eq!(p.period, 5);
        assert_eq!(p.sample_period, 100);
        assert_eq!(p.load_probe, 0xFFFF_FFFF);
    }

    #[test]
    fn parses_letters_and_glued_values() {
        let p = Params::parse("-t 10 -T5 -F task -d eth0 -w /etc/wl -c 1 -l warn").expect("parse");
        assert_eq!(p.period, 10);
        assert_eq!(p.latency_thr, 5);
        assert!(p.filter_task_probe);
        assert_eq!(p.target_dev, "eth0");
        assert_eq!(p.task_whitelist, "/etc/wl");
        assert_eq!(p.cport_flag, 1);
        assert!(p.logs);
        assert_eq!(Params::parse("-F 42").expect("pid").filter_pid, 42);
    }

    #[test]
    fn errors_name_the_option() {
        assert_eq!(
            Params::parse("-x 1"),
            Err(ParamsError::UnknownOption("-x".into()))
        );
        assert_eq!(
            Params::parse("-t"),
            Err(ParamsError::MissingValue("-t".into()))
        );
        let e = Params::parse("-t 0").expect_err("period 0").to_string();
        assert!(e.contains("`-t`") && e.contains("`0`"), "{e}");
        assert!(Params::parse("-t abc").is_err());
        assert!(Params::parse("-U 101").is_err());
        assert!(Params::parse("period").is_err());
    }
}
