//! A throughput sparkline drawn on the server as inline SVG: no chart library, nothing to
//! download, and no inline style (the dashboard's CSP forbids it; SVG attributes are enough).
use maud::{Markup, html};
use serde_json::Value;

const WIDTH: f64 = 600.0;
const HEIGHT: f64 = 60.0;

/// Settled and released generations per hour (the summary's `hours`), as two lines on one
/// scale, with the peak written beside them.
pub fn hours(hours: &[Value]) -> Markup {
    let settled: Vec<i64> = hours
        .iter()
        .map(|hour| hour["settled"].as_i64().unwrap_or(0))
        .collect();
    let released: Vec<i64> = hours
        .iter()
        .map(|hour| {
            hour["released"]
                .as_object()
                .map(|codes| codes.values().filter_map(Value::as_i64).sum())
                .unwrap_or(0)
        })
        .collect();
    let peak = settled.iter().chain(&released).copied().max().unwrap_or(0);
    html! {
        figure class="sparkline" id="throughput" data-settled=(sum(&settled)) data-released=(sum(&released)) {
            svg xmlns="http://www.w3.org/2000/svg" viewBox={ "0 0 " (WIDTH) " " (HEIGHT) }
                width=(WIDTH) height=(HEIGHT) role="img" aria-label="Settled and released per hour" {
                line x1="0" y1=(HEIGHT) x2=(WIDTH) y2=(HEIGHT) stroke="#c9ced8" stroke-width="1" {}
                polyline points=(points(&settled, peak)) fill="none" stroke="#2b8a3e" stroke-width="2" {}
                polyline points=(points(&released, peak)) fill="none" stroke="#a4161a" stroke-width="2" {}
            }
            figcaption {
                span class="settled" { "settled " (sum(&settled)) } " · "
                span class="released" { "released " (sum(&released)) } " · peak " (peak)
                " per hour over " (hours.len()) " hours"
            }
        }
    }
}

fn sum(values: &[i64]) -> i64 {
    values.iter().sum()
}

/// `x,y` pairs spread over the width, scaled so that `peak` touches the top (a flat line at
/// the bottom when nothing happened).
fn points(values: &[i64], peak: i64) -> String {
    let step = if values.len() > 1 {
        WIDTH / (values.len() - 1) as f64
    } else {
        0.0
    };
    let scale = if peak > 0 {
        (HEIGHT - 4.0) / peak as f64
    } else {
        0.0
    };
    values
        .iter()
        .enumerate()
        .map(|(index, value)| {
            let x = index as f64 * step;
            let y = HEIGHT - 1.0 - *value as f64 * scale;
            format!("{x:.1},{y:.1}")
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_peak_touches_the_top_and_nothing_lies_on_the_bottom() {
        assert_eq!(points(&[0, 4, 2], 4), "0.0,59.0 300.0,3.0 600.0,31.0");
        assert_eq!(points(&[0, 0], 0), "0.0,59.0 600.0,59.0");
        assert_eq!(points(&[7], 7), "0.0,3.0");
    }
}
