//! Parts of the command line tool: the render options' arguments and their translation (args),
//! what it prints while a render runs and Ctrl-C (progress), the web view beside it (serve), and
//! `stylize plot` (plot).

pub mod args;
pub mod plot;
pub mod progress;
pub mod serve;
