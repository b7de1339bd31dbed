//! `GEO_DISTANCE(lat1, lon1, lat2, lon2[, unit])`: the great-circle distance between two points, in
//! kilometres (`'KM'`, the default, also for a NULL unit) or miles (`'MI'`), by the haversine formula
//! as ksqlDB computes it; another unit gives NULL.

use std::sync::Arc;

use datafusion::arrow::array::{Array, AsArray, Float64Builder};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Float64Type};
use datafusion::common::Result;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDFImpl, Signature, TypeSignature, Volatility,
};

use super::strings_of;

/// Earth's radius as ksqlDB takes it.
const RADIUS_KM: f64 = 6371.0;
const RADIUS_MI: f64 = 3959.0;

#[derive(Debug, PartialEq, Eq, Hash)]
pub struct GeoDistance {
    signature: Signature,
}

impl Default for GeoDistance {
    fn default() -> Self {
        let points = vec![DataType::Float64; 4];
        let mut with_unit = points.clone();
        with_unit.push(DataType::Utf8);
        GeoDistance {
            signature: Signature::one_of(
                vec![
                    TypeSignature::Exact(points),
                    TypeSignature::Exact(with_unit),
                ],
                Volatility::Immutable,
            ),
        }
    }
}

impl ScalarUDFImpl for GeoDistance {
    fn name(&self) -> &str {
        "geo_distance"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(DataType::Float64)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let coords = args.args[..4]
            .iter()
            .map(|a| cast(&a.to_array(rows)?, &DataType::Float64).map_err(Into::into))
            .collect::<Result<Vec<_>>>()?;
        let units = args.args.get(4).map(|u| strings_of(u, rows)).transpose()?;
        let [lat1, lon1, lat2, lon2] =
            [0, 1, 2, 3].map(|i| coords[i].as_primitive::<Float64Type>());
        let mut out = Float64Builder::with_capacity(rows);
        for i in 0..rows {
            if [lat1, lon1, lat2, lon2].iter().any(|c| c.is_null(i)) {
                out.append_null();
                continue;
            }
            // A NULL unit is the default; an unknown one gives NULL for that row alone.
            let unit = units
                .as_ref()
                .filter(|u| u.is_valid(i))
                .map(|u| u.value(i).to_lowercase());
            let radius = match unit.as_deref() {
                None | Some("km" | "kilometers" | "kilometres") => RADIUS_KM,
                Some("mi" | "miles") => RADIUS_MI,
                Some(_) => {
                    out.append_null();
                    continue;
                }
            };
            out.append_value(haversine(
                [lat1.value(i), lon1.value(i)],
                [lat2.value(i), lon2.value(i)],
                radius,
            ));
        }
        Ok(ColumnarValue::Array(Arc::new(out.finish())))
    }
}

fn haversine([lat1, lon1]: [f64; 2], [lat2, lon2]: [f64; 2], radius: f64) -> f64 {
    let (lat1, lat2) = (lat1.to_radians(), lat2.to_radians());
    let d_lat = lat2 - lat1;
    let d_lon = (lon2 - lon1).to_radians();
    let a = (d_lat / 2.0).sin().powi(2) + (d_lon / 2.0).sin().powi(2) * lat1.cos() * lat2.cos();
    radius * 2.0 * a.sqrt().asin()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distances_follow_the_haversine_formula() {
        let sf = [37.7749, -122.4194];
        let mv = [37.4133, -122.1162];
        let km = haversine(sf, mv, RADIUS_KM);
        assert!((km - 48.37).abs() < 0.1, "{km}");
        assert!((haversine(sf, mv, RADIUS_MI) / km - RADIUS_MI / RADIUS_KM).abs() < 1e-12);
        assert_eq!(haversine(sf, sf, RADIUS_KM), 0.0);
    }
}
