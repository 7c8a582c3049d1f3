use crate::Result;

pub fn run(_args: &super::TrainArgs) -> Result<()> {
    Err(crate::Error::usage("'eraengine train' is not built yet"))
}
