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
//! A point is located in the first zone, in file order, whose polygon contains it or holds it on
//! its border.

use geo::{BoundingRect, Intersects, MultiPolygon, Point, Rect};
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
        for (i, f) in fc.features.into_iter().enumerate() {
            let zone = parse_feature(f).map_err(|m| format!("feature {i}: {m}"))?;
            if set.by_id.contains_key(&zone.id) {
                return Err(format!("feature {i}: duplicate zone id {:?}", zone.id));
            }
            set.push(zone);
        }
        if set.zones.is_empty() {
            return Err("no zone in the file".into());
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
            polygon: None,
            bbox: None,
        }
    }
}

fn parse_feature(f: geojson::Feature) -> Result<Zone, String> {
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
    Ok(Zone {
        id,
        name,
        capacity,
        scale,
        min_agents,
        max_agents,
        default_density,
        polygon,
        bbox,
    })
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
