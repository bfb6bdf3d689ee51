//! Parts of the command line tool that are not argument parsing: what it prints while a render
//! runs and Ctrl-C (progress), the web view beside it (serve), and `stylize plot` (plot).

pub mod plot;
pub mod progress;
pub mod serve;
