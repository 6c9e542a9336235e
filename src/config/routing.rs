//! Routing-policy pieces of a queue's configuration that have a syntax of
//! their own: skill requirements (`"english>=50"`) and the relaxation steps
//! that loosen them while a caller waits.

use std::fmt;

use serde::Deserialize;

/// One skill a call needs: the agent must have `skill` with a proficiency
/// of at least `min` (1..=100; a bare name means any proficiency).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkillReq {
    pub skill: String,
    pub min: u8,
}

impl SkillReq {
    /// `name` or `name>=N` with N in 1..=100.
    pub fn parse(s: &str) -> Result<SkillReq, String> {
        let (name, min) = match s.split_once(">=") {
            Some((name, n)) => {
                let n = n.trim();
                let min: u8 = n
                    .parse()
                    .ok()
                    .filter(|m| (1..=100).contains(m))
                    .ok_or_else(|| format!("\"{s}\": proficiency \"{n}\" is not a number in 1..=100"))?;
                (name.trim(), min)
            }
            None => (s.trim(), 1),
        };
        let valid = !name.is_empty()
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
        if !valid {
            return Err(format!("\"{s}\": expected a skill name or name>=N"));
        }
        Ok(SkillReq { skill: name.to_string(), min })
    }
}

impl fmt::Display for SkillReq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.min <= 1 {
            f.write_str(&self.skill)
        } else {
            write!(f, "{}>={}", self.skill, self.min)
        }
    }
}

impl<'de> Deserialize<'de> for SkillReq {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        SkillReq::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// Member states that make a queue count as empty for `join_empty` and
/// `leave_when_empty`: the queue is empty when every member is in one of
/// the listed states (busy or ringing agents never make it empty).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EmptyWhen {
    /// No reachable registration: none at all, or every contact failed
    /// the liveness check (so `offline` covers `unreachable`).
    Offline,
    Paused,
    WrapUp,
    /// Registered, but no contact answers the liveness OPTIONS.
    Unreachable,
}

/// After a caller has waited `after_s`, the queue's skill requirement
/// becomes `skills` (an empty list: any agent of the queue will do).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RelaxStep {
    pub after_s: u32,
    #[serde(default)]
    pub skills: Vec<SkillReq>,
}

/// The requirement in force for a call that has waited `waited_ms`: the
/// last relaxation step already reached, else the queue's own.
pub fn skills_in_force<'a>(base: &'a [SkillReq], relax: &'a [RelaxStep], waited_ms: u64) -> &'a [SkillReq] {
    relax
        .iter()
        .filter(|r| u64::from(r.after_s) * 1000 <= waited_ms)
        .max_by_key(|r| r.after_s)
        .map_or(base, |r| r.skills.as_slice())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skill_requirements_parse() {
        assert_eq!(SkillReq::parse("english").unwrap(), SkillReq { skill: "english".into(), min: 1 });
        assert_eq!(SkillReq::parse("english>=50").unwrap(), SkillReq { skill: "english".into(), min: 50 });
        assert_eq!(SkillReq::parse(" billing >= 7").unwrap().min, 7);
        assert!(SkillReq::parse("english>=0").unwrap_err().contains("1..=100"));
        assert!(SkillReq::parse("english>=101").is_err());
        assert!(SkillReq::parse("english>=x").is_err());
        assert!(SkillReq::parse(">=5").is_err());
        assert!(SkillReq::parse("a b").is_err());
        assert_eq!(SkillReq::parse("english>=20").unwrap().to_string(), "english>=20");
    }

    #[test]
    fn relaxation_steps_apply_in_order_of_wait() {
        let base = vec![SkillReq::parse("english>=50").unwrap()];
        let relax = vec![
            RelaxStep { after_s: 60, skills: vec![] },
            RelaxStep { after_s: 30, skills: vec![SkillReq::parse("english>=20").unwrap()] },
        ];
        assert_eq!(skills_in_force(&base, &relax, 29_999), base.as_slice());
        assert_eq!(skills_in_force(&base, &relax, 30_000)[0].min, 20);
        assert!(skills_in_force(&base, &relax, 60_000).is_empty());
    }
}
