use crate::Result;

pub fn run(_args: &super::BenchArgs) -> Result<()> {
    Err(crate::Error::usage("'eraengine bench' is not built yet"))
}
