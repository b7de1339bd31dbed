//! Example scalar UDF: `HAVERSINE_KM(lat1, lon1, lat2, lon2)`, the great-circle distance in kilometres
//! between two points given in degrees (NULL if any argument is NULL).

use eddy_udf::prelude::*;

/// Mean Earth radius, km.
const EARTH_RADIUS_KM: f64 = 6371.0;

/// Great-circle distance in kilometres between two points given by latitude and longitude in degrees.
#[udf]
pub fn haversine_km(lat1: f64, lon1: f64, lat2: f64, lon2: f64) -> f64 {
    let (p1, p2) = (lat1.to_radians(), lat2.to_radians());
    let dp = p2 - p1;
    let dl = (lon2 - lon1).to_radians();
    let a = (dp / 2.0).sin().powi(2) + p1.cos() * p2.cos() * (dl / 2.0).sin().powi(2);
    2.0 * EARTH_RADIUS_KM * a.sqrt().asin()
}

eddy_udf::plugin!(haversine_km);
