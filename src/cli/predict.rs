use crate::Result;

pub fn run(_args: &super::PredictArgs) -> Result<()> {
    Err(crate::Error::usage("'eraengine predict' is not built yet"))
}
