//! `eraengine train --seeds 1,2,3 --out DIR`: one ensemble member per seed (each a full `train`
//! run, refit included), then `DIR/ensemble.json`.

use super::train::{open_data, options_from_args, train_one, Render};
use super::TrainArgs;
use crate::train::ensemble::{self, Member};
use crate::train::Event;
use crate::{Error, Result};

/// The moving-average decay of ensemble members when `--ema` is not given (0 = off).
pub const MEMBER_EMA: f32 = 0.0;

/// `--seeds 1,2,3 --out DIR`: one member per seed, then DIR/ensemble.json.
pub fn run(a: &TrainArgs, seeds: &[u64]) -> Result<()> {
    // Members average no weights over time unless --ema says so: the ensemble's average over
    // seeds removes what the moving average would, and measured, the moving average lowered the
    // recommended ensemble slightly (docs/defaults.md round 9).
    let mut members_args = a.clone();
    members_args.ema = Some(a.ema.unwrap_or(MEMBER_EMA));
    let a = &members_args;
    if seeds.is_empty() {
        return Err(Error::usage("--seeds needs at least one seed"));
    }
    if a.resume || a.seed.is_some() {
        return Err(Error::usage(
            "--seeds trains fresh members with each seed; drop --resume and --seed",
        ));
    }
    let mut uniq = seeds.to_vec();
    uniq.sort_unstable();
    uniq.dedup();
    if uniq.len() != seeds.len() {
        return Err(Error::usage("--seeds lists a seed twice"));
    }
    let dir = a.out.clone().ok_or_else(|| {
        Error::usage("--seeds needs --out DIR (the directory the members are written into)")
    })?;
    if dir.exists() && !dir.is_dir() {
        return Err(Error::usage(format!(
            "--seeds: --out {} must be a directory, and is a file",
            dir.display()
        )));
    }
    options_from_args(a, false, None)?;
    super::refit::Mode::of(a)?;
    super::head_blend::Mode::of(a)?;
    let device = super::device::resolve(&a.device, a.quiet)?;
    // The data does not depend on the member: the built-in data is seed 0's.
    let (train_store, valid_store, builtin_data) = open_data(a, 0)?;
    let builtin = builtin_data.is_some();
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    let mut render = Render::new(a.quiet);
    let mut members = Vec::new();
    for (index, &seed) in seeds.iter().enumerate() {
        render.show(&Event::Member {
            index,
            total: seeds.len(),
            seed,
        });
        let file = ensemble::member_file(seed);
        let res = train_one(
            a,
            device,
            (&train_store, valid_store.as_ref(), builtin),
            seed,
            &dir.join(&file),
            None,
            &mut render,
        )?;
        members.push(Member {
            seed,
            file,
            best_epoch: res.best_epoch,
            valid_corr: res.best.map(|b| b.mean),
            refit_epochs: res.refit_epochs,
        });
    }
    let manifest = serde_json::to_string_pretty(&ensemble::manifest_json(&members))
        .map_err(|e| Error::usage(format!("ensemble manifest: {e}")))?;
    crate::io::write_atomic(&dir.join(ensemble::MANIFEST), manifest.as_bytes())?;
    for m in &members {
        match m.valid_corr {
            Some(c) => println!(
                "member seed {}: validation mean corr {c:+.4} (epoch {}){}",
                m.seed,
                m.best_epoch.unwrap_or(0),
                match m.refit_epochs {
                    Some(r) => format!(", refit for {}", crate::progress::epochs(r)),
                    None => String::new(),
                }
            ),
            None => println!("member seed {}: {}", m.seed, m.file),
        }
    }
    println!(
        "ensemble of {} members in {} (predict --model {})",
        members.len(),
        dir.display(),
        dir.display()
    );
    Ok(())
}
