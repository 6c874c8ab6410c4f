//! Zone files: a GeoJSON `FeatureCollection`, one feature per zone, the zone's parameters in its
//! `properties`, its polygon (WGS84 `Polygon` or `MultiPolygon`) as its geometry. A zone may have
//! no geometry (`null`): records then reach it by id only.
//!
//! ```json
//! {"type":"Feature","geometry":{"type":"MultiPolygon","coordinates":[…]},
//!  "properties":{"id":"13001","name":"Marseille 1er","capacity":10050,"scale":10,
//!                "min_agents":1,"max_agents":9,"default_density":2010}}
//! ```
//!
//! Two optional properties serve model v2: `road_capacity` (vehicles per hour, > 0; a zone
//! without it has no traffic fluidity) and `neighbours` (a list of zone ids, whose events'
//! exposure spills into the zone). Without `neighbours`, a zone's neighbours are the zones whose
//! polygons share at least one boundary point with its own; `[]` means none; duplicates are
//! ignored; a zone that lists itself or an id that is not a zone makes the file fail to load.
//! The relation is used as listed: it need not be symmetric.
//!
//! A point is located in the first zone, in file order, whose polygon contains it or holds it on
//! its border.

use geo::{BoundingRect, Intersects, Line, MultiPolygon, Point, Rect};
use rustc_hash::FxHashMap;
use vigie_model::ZoneIdx;

/// One zone and its parameters.
#[derive(Clone, Debug)]
pub struct Zone {
    pub id: String,
    pub name: String,
    /// People the zone holds at ease (> 0).
    pub capacity: f64,
    /// Scale of the risk score (> 0).
    pub scale: f64,
    pub min_agents: u64,
    pub max_agents: u64,
    /// Crowd assumed when no density was ever observed at that hour of the week.
    pub default_density: f64,
    /// Vehicles per hour the zone's roads carry at ease (> 0); `None`: no fluidity.
    pub road_capacity: Option<f64>,
    /// The zones whose events spill into this one (sorted, without duplicates or itself).
    pub neighbours: Vec<ZoneIdx>,
    pub polygon: Option<MultiPolygon<f64>>,
    bbox: Option<Rect<f64>>,
}

/// The zones of a configuration, indexed by id and by polygon.
#[derive(Clone, Debug, Default)]
pub struct ZoneSet {
    zones: Vec<Zone>,
    by_id: FxHashMap<String, ZoneIdx>,
    /// The same for ids of at most [`SHORT_ID`] bytes, packed into an integer ([`pack`]): a
    /// replay looks up a zone id per record, and hashing and comparing one integer costs a
    /// fraction of a string's.
    short_ids: FxHashMap<u128, ZoneIdx>,
}

/// The longest id [`pack`] takes.
const SHORT_ID: usize = 15;

/// An id of at most [`SHORT_ID`] bytes as one integer: its bytes, then its length in the last
/// byte, so that two ids pack alike only if they are equal.
fn pack(id: &str) -> Option<u128> {
    let bytes = id.as_bytes();
    if bytes.len() > SHORT_ID {
        return None;
    }
    let mut buf = [0u8; 16];
    buf[..bytes.len()].copy_from_slice(bytes);
    buf[15] = bytes.len() as u8;
    Some(u128::from_le_bytes(buf))
}

impl ZoneSet {
    /// Parses a zone file.
    pub fn from_geojson(text: &str) -> Result<ZoneSet, String> {
        let gj: geojson::GeoJson = text.parse().map_err(|e| format!("not GeoJSON: {e}"))?;
        let fc = match gj {
            geojson::GeoJson::FeatureCollection(fc) => fc,
            _ => return Err("a zone file must be a FeatureCollection".into()),
        };
        let mut set = ZoneSet::default();
        let mut listed = Vec::new();
        for (i, f) in fc.features.into_iter().enumerate() {
            let (zone, neighbours) = parse_feature(f).map_err(|m| format!("feature {i}: {m}"))?;
            if set.by_id.contains_key(&zone.id) {
                return Err(format!("feature {i}: duplicate zone id {:?}", zone.id));
            }
            set.push(zone);
            listed.push(neighbours);
        }
        if set.zones.is_empty() {
            return Err("no zone in the file".into());
        }
        let adjacent = adjacency(&set.zones);
        for (i, list) in listed.into_iter().enumerate() {
            let neighbours = match list {
                None => adjacent[i].clone(),
                Some(ids) => {
                    let mut idx = Vec::with_capacity(ids.len());
                    for id in ids {
                        let n = set.by_id(&id).ok_or_else(|| {
                            format!(
                                "feature {i}: zone {}: neighbour {id:?} is not a zone",
                                set.zones[i].id
                            )
                        })?;
                        if n as usize == i {
                            return Err(format!(
                                "feature {i}: zone {id}: a zone is not its own neighbour"
                            ));
                        }
                        idx.push(n);
                    }
                    idx.sort_unstable();
                    idx.dedup();
                    idx
                }
            };
            set.zones[i].neighbours = neighbours;
        }
        Ok(set)
    }

    /// Builds a set from zones in code (tests, generators).
    pub fn from_zones(zones: Vec<Zone>) -> ZoneSet {
        let mut set = ZoneSet::default();
        for z in zones {
            set.push(z);
        }
        set
    }

    fn push(&mut self, zone: Zone) {
        let idx = self.zones.len() as ZoneIdx;
        if let Some(key) = pack(&zone.id) {
            self.short_ids.insert(key, idx);
        }
        self.by_id.insert(zone.id.clone(), idx);
        self.zones.push(zone);
    }

    /// Number of zones.
    pub fn len(&self) -> usize {
        self.zones.len()
    }

    /// True when there is no zone.
    pub fn is_empty(&self) -> bool {
        self.zones.is_empty()
    }

    /// The zone at an index.
    pub fn get(&self, idx: ZoneIdx) -> &Zone {
        &self.zones[idx as usize]
    }

    /// All zones in file order.
    pub fn iter(&self) -> impl Iterator<Item = &Zone> {
        self.zones.iter()
    }

    /// The index of the zone with this id.
    pub fn by_id(&self, id: &str) -> Option<ZoneIdx> {
        match pack(id) {
            Some(key) => self.short_ids.get(&key).copied(),
            None => self.by_id.get(id).copied(),
        }
    }

    /// The zone whose polygon holds the point (WGS84 degrees).
    pub fn locate(&self, lat: f64, lon: f64) -> Option<ZoneIdx> {
        let p = Point::new(lon, lat);
        self.zones
            .iter()
            .position(|z| {
                z.bbox.is_some_and(|b| b.intersects(&p))
                    && z.polygon.as_ref().is_some_and(|poly| poly.intersects(&p))
            })
            .map(|i| i as ZoneIdx)
    }
}

impl Zone {
    /// A zone with no polygon (tests and generated workloads).
    pub fn without_polygon(
        id: &str,
        capacity: f64,
        scale: f64,
        min_agents: u64,
        max_agents: u64,
        default_density: f64,
    ) -> Zone {
        Zone {
            id: id.to_string(),
            name: id.to_string(),
            capacity,
            scale,
            min_agents,
            max_agents,
            default_density,
            road_capacity: None,
            neighbours: Vec::new(),
            polygon: None,
            bbox: None,
        }
    }
}

/// For each zone, the zones whose polygons share at least one boundary point with its own
/// (sorted): an exact test of every pair of edges whose boxes meet, between zones whose boxes
/// meet. A zone without a polygon has none.
fn adjacency(zones: &[Zone]) -> Vec<Vec<ZoneIdx>> {
    let edges: Vec<Vec<Line<f64>>> = zones
        .iter()
        .map(|z| {
            z.polygon
                .iter()
                .flat_map(|mp| mp.iter())
                .flat_map(|p| {
                    std::iter::once(p.exterior())
                        .chain(p.interiors())
                        .flat_map(|ring| ring.lines())
                })
                .collect()
        })
        .collect();
    let mut out = vec![Vec::new(); zones.len()];
    for i in 0..zones.len() {
        for j in i + 1..zones.len() {
            let (Some(a), Some(b)) = (zones[i].bbox, zones[j].bbox) else {
                continue;
            };
            if !a.intersects(&b) {
                continue;
            }
            let near_b: Vec<&Line<f64>> = edges[i]
                .iter()
                .filter(|l| l.bounding_rect().intersects(&b))
                .collect();
            let touch = edges[j]
                .iter()
                .filter(|l| l.bounding_rect().intersects(&a))
                .any(|l| near_b.iter().any(|m| l.intersects(*m)));
            if touch {
                out[i].push(j as ZoneIdx);
                out[j].push(i as ZoneIdx);
            }
        }
    }
    for list in &mut out {
        list.sort_unstable();
    }
    out
}

/// A zone, and its `neighbours` as listed (`None`: not listed).
fn parse_feature(f: geojson::Feature) -> Result<(Zone, Option<Vec<String>>), String> {
    let props = f.properties.unwrap_or_default();
    for k in props.keys() {
        if ![
            "id",
            "name",
            "capacity",
            "scale",
            "min_agents",
            "max_agents",
            "default_density",
            "road_capacity",
            "neighbours",
        ]
        .contains(&k.as_str())
        {
            return Err(format!("unknown property `{k}`"));
        }
    }
    let id = match props.get("id") {
        Some(serde_json::Value::String(s)) if !s.is_empty() => s.clone(),
        Some(serde_json::Value::Number(n)) => n.to_string(),
        _ => return Err("property `id` is missing or not a non-empty string".into()),
    };
    let num = |k: &str| -> Result<f64, String> {
        props
            .get(k)
            .and_then(|v| v.as_f64())
            .filter(|v| v.is_finite())
            .ok_or_else(|| format!("zone {id}: property `{k}` is missing or not a number"))
    };
    let int = |k: &str| -> Result<u64, String> {
        props.get(k).and_then(|v| v.as_u64()).ok_or_else(|| {
            format!("zone {id}: property `{k}` is missing or not a non-negative integer")
        })
    };
    let name = props
        .get("name")
        .and_then(|v| v.as_str())
        .unwrap_or(&id)
        .to_string();
    let capacity = num("capacity")?;
    let scale = num("scale")?;
    if capacity <= 0.0 {
        return Err(format!("zone {id}: `capacity` must be > 0, got {capacity}"));
    }
    if scale <= 0.0 {
        return Err(format!("zone {id}: `scale` must be > 0, got {scale}"));
    }
    let min_agents = int("min_agents")?;
    let max_agents = int("max_agents")?;
    if min_agents > max_agents {
        return Err(format!(
            "zone {id}: `min_agents` {min_agents} exceeds `max_agents` {max_agents}"
        ));
    }
    let default_density = num("default_density")?;
    if default_density < 0.0 {
        return Err(format!("zone {id}: `default_density` must be >= 0"));
    }
    let road_capacity = match props.get("road_capacity") {
        None | Some(serde_json::Value::Null) => None,
        Some(v) => match v.as_f64() {
            Some(c) if c.is_finite() && c > 0.0 => Some(c),
            _ => {
                return Err(format!(
                    "zone {id}: `road_capacity` must be a number > 0, got {v}"
                ))
            }
        },
    };
    let neighbours = match props.get("neighbours") {
        None => None,
        Some(serde_json::Value::Array(items)) => Some(
            items
                .iter()
                .map(|v| match v {
                    serde_json::Value::String(s) => Ok(s.clone()),
                    serde_json::Value::Number(n) => Ok(n.to_string()),
                    other => Err(format!(
                        "zone {id}: `neighbours` holds {other}, not a zone id"
                    )),
                })
                .collect::<Result<Vec<_>, _>>()?,
        ),
        Some(other) => {
            return Err(format!(
                "zone {id}: `neighbours` must be a list of zone ids, got {other}"
            ))
        }
    };
    let polygon = match f.geometry {
        None => None,
        Some(g) => {
            let geom: geo::Geometry<f64> = g
                .try_into()
                .map_err(|e| format!("zone {id}: bad geometry: {e}"))?;
            Some(match geom {
                geo::Geometry::Polygon(p) => MultiPolygon::new(vec![p]),
                geo::Geometry::MultiPolygon(mp) => mp,
                _ => {
                    return Err(format!(
                        "zone {id}: geometry must be a Polygon or MultiPolygon"
                    ))
                }
            })
        }
    };
    let bbox = polygon.as_ref().and_then(|p| p.bounding_rect());
    Ok((
        Zone {
            id,
            name,
            capacity,
            scale,
            min_agents,
            max_agents,
            default_density,
            road_capacity,
            neighbours: Vec::new(),
            polygon,
            bbox,
        },
        neighbours,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TWO_SQUARES: &str = r#"{"type":"FeatureCollection","features":[
      {"type":"Feature","geometry":{"type":"Polygon","coordinates":[[[0,0],[1,0],[1,1],[0,1],[0,0]]]},
       "properties":{"id":"a","capacity":10,"scale":5,"min_agents":1,"max_agents":4,"default_density":2}},
      {"type":"Feature","geometry":{"type":"Polygon","coordinates":[[[1,0],[2,0],[2,1],[1,1],[1,0]]]},
       "properties":{"id":"b","capacity":10,"scale":5,"min_agents":1,"max_agents":4,"default_density":2}},
      {"type":"Feature","geometry":null,
       "properties":{"id":7,"capacity":10,"scale":5,"min_agents":0,"max_agents":0,"default_density":0}}]}"#;

    #[test]
    fn locates_points_first_zone_wins_on_borders() {
        let z = ZoneSet::from_geojson(TWO_SQUARES).unwrap();
        assert_eq!(z.len(), 3);
        assert_eq!(z.locate(0.5, 0.5), Some(0));
        assert_eq!(z.locate(0.5, 1.5), Some(1));
        assert_eq!(z.locate(0.5, 1.0), Some(0));
        assert_eq!(z.locate(5.0, 5.0), None);
        assert_eq!(z.by_id("7"), Some(2));
    }

    #[test]
    fn ids_are_found_exactly_short_or_long() {
        let ids = [
            "a",
            "a\\u0000",
            "z042",
            "z0420",
            "fifteen-bytes-x",
            "fifteen-bytes-xy",
            "fifteen-bytes-xyz",
            "\\u00e9t\\u00e9",
        ];
        let features: Vec<String> = ids
            .iter()
            .map(|id| {
                format!(
                    r#"{{"type":"Feature","geometry":null,"properties":{{"id":"{id}","capacity":1,"scale":1,"min_agents":0,"max_agents":0,"default_density":0}}}}"#
                )
            })
            .collect();
        let text = format!(
            r#"{{"type":"FeatureCollection","features":[{}]}}"#,
            features.join(",")
        );
        let z = ZoneSet::from_geojson(&text).unwrap();
        for (i, zone) in z.iter().enumerate() {
            assert_eq!(z.by_id(&zone.id), Some(i as ZoneIdx), "{:?}", zone.id);
        }
        assert_eq!(z.get(1).id, "a\0");
        assert_eq!(z.get(7).id, "\u{e9}t\u{e9}");
        for missing in [
            "",
            "b",
            "a\0\0",
            "z04",
            "fifteen-bytes-",
            "fifteen-bytes-xyzw",
            "\u{e9}t",
        ] {
            assert_eq!(z.by_id(missing), None, "{missing:?}");
        }
    }

    #[test]
    fn neighbours_come_from_touching_polygons_or_from_their_list() {
        // a and b share an edge; c touches b at one corner only; d is apart; e has no polygon
        // and lists its neighbours (one twice); f lists none.
        let square = |id: &str, x: f64, y: f64, extra: &str| {
            format!(
                r#"{{"type":"Feature","geometry":{{"type":"Polygon","coordinates":[[[{x},{y}],[{x1},{y}],[{x1},{y1}],[{x},{y1}],[{x},{y}]]]}},
                "properties":{{"id":"{id}","capacity":10,"scale":5,"min_agents":1,"max_agents":4,"default_density":2{extra}}}}}"#,
                x1 = x + 1.0,
                y1 = y + 1.0
            )
        };
        let text = format!(
            r#"{{"type":"FeatureCollection","features":[{},{},{},{},
            {{"type":"Feature","geometry":null,"properties":{{"id":"e","capacity":10,"scale":5,"min_agents":0,"max_agents":0,"default_density":0,"neighbours":["d","a","d"],"road_capacity":1800}}}},
            {}]}}"#,
            square("a", 0.0, 0.0, ""),
            square("b", 1.0, 0.0, ""),
            square("c", 2.0, 1.0, ""),
            square("d", 5.0, 5.0, ""),
            square("f", 0.0, 1.0, r#","neighbours":[]"#),
        );
        let z = ZoneSet::from_geojson(&text).unwrap();
        let names = |i: ZoneIdx| -> Vec<&str> {
            z.get(i)
                .neighbours
                .iter()
                .map(|n| z.get(*n).id.as_str())
                .collect()
        };
        assert_eq!(names(0), ["b", "f"]);
        assert_eq!(names(1), ["a", "c", "f"]);
        assert_eq!(names(2), ["b"]);
        assert!(names(3).is_empty());
        assert_eq!(names(4), ["a", "d"]);
        assert!(names(5).is_empty(), "an empty list means none");
        assert_eq!(z.get(4).road_capacity, Some(1800.0));
        assert_eq!(z.get(0).road_capacity, None);
        // Listing itself or an unknown id refuses the file.
        let bad = text.replace(r#"["d","a","d"]"#, r#"["e"]"#);
        assert!(ZoneSet::from_geojson(&bad)
            .unwrap_err()
            .contains("own neighbour"));
        let bad = text.replace(r#"["d","a","d"]"#, r#"["zz"]"#);
        assert!(ZoneSet::from_geojson(&bad)
            .unwrap_err()
            .contains("not a zone"));
        let bad = text.replace(r#""road_capacity":1800"#, r#""road_capacity":0"#);
        assert!(ZoneSet::from_geojson(&bad)
            .unwrap_err()
            .contains("road_capacity"));
    }

    #[test]
    fn bad_zone_files_say_which_feature_and_property() {
        let bad = TWO_SQUARES.replace(
            "\"capacity\":10,\"scale\":5,\"min_agents\":1",
            "\"capacity\":-1,\"scale\":5,\"min_agents\":1",
        );
        let e = ZoneSet::from_geojson(&bad).unwrap_err();
        assert!(e.contains("feature 0") && e.contains("capacity"), "{e}");
        let bad = TWO_SQUARES.replace("\"id\":\"b\"", "\"id\":\"a\"");
        assert!(ZoneSet::from_geojson(&bad)
            .unwrap_err()
            .contains("duplicate"));
        let bad = TWO_SQUARES.replace(
            "\"scale\":5,\"min_agents\":0",
            "\"scale\":5,\"colour\":1,\"min_agents\":0",
        );
        assert!(ZoneSet::from_geojson(&bad).unwrap_err().contains("colour"));
    }
}
