//! `OutputFormat` dispatches to the same writers the format modules export.

use std::path::Path;

use rprof_format::{
    read_pstats, render_table, write_chrome_trace, write_collapsed, write_flamegraph, write_pprof,
    write_speedscope, ChromeTrace, Flamegraph, Metric, OutputFormat, OutputOptions, ProfileData,
    Speedscope,
};

use crate::capture;

#[test]
fn every_format_writes_the_capture() {
    let c = capture::full();
    let data = ProfileData::new(&c.profile, Some(&c.paths));
    let mut options = OutputOptions::default();
    options.metric = Metric::Calls;
    options.icicle = true;
    options.title = Some("service".to_string());
    options.pid = Some(4000);
    for format in OutputFormat::ALL {
        let file = format!("profile{}", format.extension());
        assert_eq!(OutputFormat::from_path(Path::new(&file)), Some(format));
        let mut out = Vec::new();
        format
            .write(data, &options, &mut out)
            .unwrap_or_else(|e| panic!("{format}: {e}"));
        let mut want = Vec::new();
        match format {
            OutputFormat::Pstats => {
                assert_eq!(read_pstats(&out).unwrap(), c.profile);
                continue;
            }
            OutputFormat::Text => {
                want = render_table(&c.profile, &options.table).into_bytes();
            }
            OutputFormat::Collapsed => {
                write_collapsed(&c.paths, Metric::Calls, &mut want).unwrap();
            }
            OutputFormat::Flamegraph => {
                let mut f = Flamegraph::new(Metric::Calls, true);
                f.title = Some("service".to_string());
                write_flamegraph(&c.paths, &f, &mut want).unwrap();
            }
            OutputFormat::Speedscope => {
                let mut s = Speedscope::default();
                s.name = Some("service".to_string());
                write_speedscope(&c.paths, &s, &mut want).unwrap();
            }
            OutputFormat::ChromeTrace => {
                let mut t = ChromeTrace::new(4000);
                t.process_name = Some("service".to_string());
                write_chrome_trace(&c.paths, &t, &mut want).unwrap();
            }
            OutputFormat::Pprof => write_pprof(&c.paths, &mut want).unwrap(),
        }
        assert!(out == want, "{format} differs from its module's writer");
    }
}
