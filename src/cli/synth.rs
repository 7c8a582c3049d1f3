use crate::Result;

pub fn run(_args: &super::SynthArgs) -> Result<()> {
    Err(crate::Error::usage("'eraengine synth' is not built yet"))
}
