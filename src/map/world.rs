//! The offline basemap: country outlines from Natural Earth (public domain, via the
//! `world-atlas` package's TopoJSON), decoded once into plain rings of coordinates.

use std::sync::OnceLock;

use serde_json::Value;

/// One ring: longitude, latitude pairs.
pub type Ring = Vec<[f32; 2]>;

#[derive(Debug, thiserror::Error)]
pub enum WorldError {
    #[error("cannot read {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("the basemap file is not TopoJSON: {0}")]
    Format(String),
}

static OUTLINES: OnceLock<Vec<Ring>> = OnceLock::new();

/// The country outlines under `site_root/world/countries-110m.json`, decoded on first use.
pub fn outlines(site_root: &str) -> Result<&'static [Ring], WorldError> {
    if let Some(rings) = OUTLINES.get() {
        return Ok(rings);
    }
    let path = format!("{site_root}/world/countries-110m.json");
    let text = std::fs::read_to_string(&path).map_err(|source| WorldError::Read { path, source })?;
    let rings = decode(&text)?;
    Ok(OUTLINES.get_or_init(|| rings))
}

fn bad(what: &str) -> WorldError {
    WorldError::Format(what.to_owned())
}

/// Decode a TopoJSON topology's `countries` object into rings.
pub fn decode(text: &str) -> Result<Vec<Ring>, WorldError> {
    let topology: Value = serde_json::from_str(text).map_err(|e| WorldError::Format(e.to_string()))?;
    let pair = |v: &Value| -> Option<[f64; 2]> { Some([v.get(0)?.as_f64()?, v.get(1)?.as_f64()?]) };
    let transform = topology.get("transform");
    let scale = transform.and_then(|t| t.get("scale")).and_then(pair).unwrap_or([1.0, 1.0]);
    let translate = transform.and_then(|t| t.get("translate")).and_then(pair).unwrap_or([0.0, 0.0]);
    let quantized = transform.is_some();

    let arcs: Vec<Vec<[f32; 2]>> = topology
        .get("arcs")
        .and_then(Value::as_array)
        .ok_or_else(|| bad("no arcs"))?
        .iter()
        .map(|arc| {
            let (mut x, mut y) = (0.0, 0.0);
            arc.as_array()
                .map(|points| {
                    points
                        .iter()
                        .filter_map(pair)
                        .map(|[px, py]| {
                            if quantized {
                                x += px;
                                y += py;
                            } else {
                                (x, y) = (px, py);
                            }
                            [(x * scale[0] + translate[0]) as f32, (y * scale[1] + translate[1]) as f32]
                        })
                        .collect()
                })
                .unwrap_or_default()
        })
        .collect();

    let ring_of = |indices: &Value| -> Ring {
        let mut ring: Ring = Vec::new();
        for index in indices.as_array().into_iter().flatten().filter_map(Value::as_i64) {
            let (arc, reversed) = if index < 0 { (!index, true) } else { (index, false) };
            let Some(points) = usize::try_from(arc).ok().and_then(|i| arcs.get(i)) else { continue };
            let mut points = points.clone();
            if reversed {
                points.reverse();
            }
            // Consecutive arcs share their joining point.
            let skip = usize::from(!ring.is_empty());
            ring.extend(points.into_iter().skip(skip));
        }
        ring
    };

    let geometries = topology
        .pointer("/objects/countries/geometries")
        .and_then(Value::as_array)
        .ok_or_else(|| bad("no countries"))?;
    let mut rings = Vec::new();
    for geometry in geometries {
        let Some(arcs) = geometry.get("arcs") else { continue };
        match geometry.get("type").and_then(Value::as_str) {
            Some("Polygon") => rings.extend(arcs.as_array().into_iter().flatten().map(ring_of)),
            Some("MultiPolygon") => {
                for polygon in arcs.as_array().into_iter().flatten() {
                    rings.extend(polygon.as_array().into_iter().flatten().map(ring_of));
                }
            }
            _ => {}
        }
    }
    rings.retain(|r| r.len() >= 3);
    Ok(rings.into_iter().map(unwrap_antimeridian).collect())
}

/// Make a ring's longitudes continuous. A ring that crosses the antimeridian jumps from
/// +180° to -180° between two points; drawn as given, that edge is a line across the whole
/// map (and a fill across the Pacific). After this the ring reaches past ±180° instead, and
/// the map draws it in each copy of the world it shows. A ring that goes around a pole (it
/// ends 360° from where it started) is closed along the map's edge at that pole.
pub fn unwrap_antimeridian(ring: Ring) -> Ring {
    let mut out: Ring = Vec::with_capacity(ring.len() + 2);
    let mut shift = 0.0f32;
    let mut previous: Option<f32> = None;
    for [lon, lat] in ring {
        if let Some(before) = previous {
            if lon - before > 180.0 {
                shift -= 360.0;
            } else if lon - before < -180.0 {
                shift += 360.0;
            }
        }
        previous = Some(lon);
        out.push([lon + shift, lat]);
    }
    if let (Some(&first), Some(&last)) = (out.first(), out.last()) {
        if (last[0] - first[0]).abs() > 180.0 {
            let mean = out.iter().map(|p| p[1]).sum::<f32>() / out.len() as f32;
            let pole = if mean < 0.0 { -90.0 } else { 90.0 };
            out.push([last[0], pole]);
            out.push([first[0], pole]);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_quantized_arcs_in_both_directions() {
        let topology = r#"{
            "type": "Topology",
            "transform": {"scale": [1, 2], "translate": [10, 20]},
            "objects": {"countries": {"type": "GeometryCollection", "geometries": [
                {"type": "Polygon", "arcs": [[0, -2]]}
            ]}},
            "arcs": [[[0, 0], [1, 0], [0, 1]], [[0, 0], [1, 1]]]
        }"#;
        let rings = decode(topology).unwrap();
        assert_eq!(rings, vec![vec![[10.0, 20.0], [11.0, 20.0], [11.0, 22.0], [10.0, 20.0]]]);
    }

    #[test]
    fn the_shipped_atlas_decodes_into_many_countries() {
        let path = "tools/node_modules/world-atlas/countries-110m.json";
        let Ok(text) = std::fs::read_to_string(path) else {
            panic!("{path} is missing: run `make tools`");
        };
        let rings = decode(&text).unwrap();
        assert!(rings.len() > 200, "{} rings", rings.len());
        assert!(rings
            .iter()
            .flatten()
            .all(|[lon, lat]| (-540.0..=540.0).contains(lon) && (-90.0..=90.0).contains(lat)));
        // No edge jumps across the map (the line across the Pacific), and Chukotka reaches
        // past 180° rather than wrapping to -180°.
        for ring in &rings {
            let along_a_pole = |w: &[[f32; 2]]| w[0][1].abs() == 90.0 && w[1][1].abs() == 90.0;
            assert!(
                ring.windows(2).all(|w| (w[1][0] - w[0][0]).abs() < 180.0 || along_a_pole(w)),
                "a jump in {:?}",
                &ring[..3]
            );
        }
        assert!(rings.iter().flatten().any(|[lon, lat]| *lon > 180.0 && *lat > 60.0), "Chukotka past 180°");
        // Every ring closes where it starts, or around a pole along the map's edge.
        for ring in &rings {
            let (first, last) = (ring[0], ring[ring.len() - 1]);
            assert!((first[0] - last[0]).abs() < 1e-3 || last[1].abs() == 90.0, "{first:?} … {last:?}");
        }
    }

    #[test]
    fn rings_across_the_antimeridian_are_made_continuous() {
        // An island from 179° E to 179° W, as a shapefile gives it.
        let island = vec![[179.0, 1.0], [-179.0, 1.0], [-179.0, -1.0], [179.0, -1.0], [179.0, 1.0]];
        assert_eq!(
            unwrap_antimeridian(island),
            vec![[179.0, 1.0], [181.0, 1.0], [181.0, -1.0], [179.0, -1.0], [179.0, 1.0]]
        );
        // A ring around the south pole: its coast from -180° to 180°, then back along -90°.
        let antarctica = vec![
            [-180.0, -80.0],
            [-90.0, -75.0],
            [0.0, -70.0],
            [90.0, -75.0],
            [180.0, -80.0],
            [180.0, -90.0],
            [-180.0, -90.0],
            [-180.0, -80.0],
        ];
        let unwrapped = unwrap_antimeridian(antarctica);
        assert!(unwrapped.windows(2).all(|w| (w[1][0] - w[0][0]).abs() < 180.0 || w[0][1] == -90.0), "{unwrapped:?}");
        assert_eq!(unwrapped.last().unwrap()[1], -90.0, "closed at the pole");
    }
}
