use crate::Result;

pub fn run(_args: &super::EvalArgs) -> Result<()> {
    Err(crate::Error::usage("'eraengine eval' is not built yet"))
}
