use crate::Result;

pub fn run(_args: &super::InfoArgs) -> Result<()> {
    Err(crate::Error::usage("'eraengine info' is not built yet"))
}
