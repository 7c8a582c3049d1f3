use crate::Result;

pub fn run(_args: &super::ImportArgs) -> Result<()> {
    Err(crate::Error::usage("'eraengine import' is not built yet"))
}
