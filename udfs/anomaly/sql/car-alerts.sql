-- Connected-car anomaly detection (docs/anomaly-detection.md): every car's 14 sensors, once a second,
-- summarised per car in 20-second windows every 5 seconds and scored by the windowed Gaussian model of
-- udfs/anomaly/models through its alias 'production'. Run by scripts/demo; tests/e2e runs the same
-- file against 500,400 events. The server needs the anomaly plugin (--plugin-dir) and the models in
-- its catalog (EDDY_MODEL_DIR or ksql.functions._global_.model_dir preloads udfs/anomaly/models), and
-- the alias set before the queries are created (ALTER MODEL gaussian_20s SET ALIAS production = 2);
-- a rollout then moves it, or splits it between versions, under the running queries
-- (docs/anomaly-detection.md, "The model catalog").

SET 'auto.offset.reset'='earliest';

-- The readings, as udfs/anomaly/train/telemetry.py produces them (label, fault and episode are the
-- generator's ground truth, for measuring; a real car does not send them).
CREATE STREAM telemetry (
    car_id STRING KEY,
    ts BIGINT,
    speed_kmh DOUBLE,
    rpm DOUBLE,
    throttle_pct DOUBLE,
    engine_load_pct DOUBLE,
    coolant_c DOUBLE,
    oil_c DOUBLE,
    intake_c DOUBLE,
    battery_v DOUBLE,
    tire_fl_bar DOUBLE,
    tire_fr_bar DOUBLE,
    tire_rl_bar DOUBLE,
    tire_rr_bar DOUBLE,
    fuel_rate_lph DOUBLE,
    ambient_c DOUBLE,
    label INT,
    fault STRING,
    episode INT
) WITH (kafka_topic='telemetry', value_format='JSON', partitions=4, timestamp='ts');

-- The model's features: each sensor's mean and spread per car over the last 20 seconds, every 5
-- seconds, one row per window when it closes; and how many readings the window has.
CREATE TABLE car_windows AS SELECT
    car_id,
    COUNT(*) AS readings,
    AVG(speed_kmh) AS speed_kmh_avg,
    AVG(rpm) AS rpm_avg,
    AVG(throttle_pct) AS throttle_pct_avg,
    AVG(engine_load_pct) AS engine_load_pct_avg,
    AVG(coolant_c) AS coolant_c_avg,
    AVG(oil_c) AS oil_c_avg,
    AVG(intake_c) AS intake_c_avg,
    AVG(battery_v) AS battery_v_avg,
    AVG(tire_fl_bar) AS tire_fl_bar_avg,
    AVG(tire_fr_bar) AS tire_fr_bar_avg,
    AVG(tire_rl_bar) AS tire_rl_bar_avg,
    AVG(tire_rr_bar) AS tire_rr_bar_avg,
    AVG(fuel_rate_lph) AS fuel_rate_lph_avg,
    AVG(ambient_c) AS ambient_c_avg,
    STDDEV_POP(speed_kmh) AS speed_kmh_sd,
    STDDEV_POP(rpm) AS rpm_sd,
    STDDEV_POP(throttle_pct) AS throttle_pct_sd,
    STDDEV_POP(engine_load_pct) AS engine_load_pct_sd,
    STDDEV_POP(coolant_c) AS coolant_c_sd,
    STDDEV_POP(oil_c) AS oil_c_sd,
    STDDEV_POP(intake_c) AS intake_c_sd,
    STDDEV_POP(battery_v) AS battery_v_sd,
    STDDEV_POP(tire_fl_bar) AS tire_fl_bar_sd,
    STDDEV_POP(tire_fr_bar) AS tire_fr_bar_sd,
    STDDEV_POP(tire_rl_bar) AS tire_rl_bar_sd,
    STDDEV_POP(tire_rr_bar) AS tire_rr_bar_sd,
    STDDEV_POP(fuel_rate_lph) AS fuel_rate_lph_sd,
    STDDEV_POP(ambient_c) AS ambient_c_sd
  FROM telemetry
  WINDOW HOPPING (SIZE 20 SECONDS, ADVANCE BY 5 SECONDS, GRACE PERIOD 10 SECONDS)
  GROUP BY car_id
  EMIT FINAL;

-- The closed windows as a stream of events.
CREATE STREAM car_window_features (
    car_id STRING KEY,
    readings BIGINT,
    speed_kmh_avg DOUBLE,
    rpm_avg DOUBLE,
    throttle_pct_avg DOUBLE,
    engine_load_pct_avg DOUBLE,
    coolant_c_avg DOUBLE,
    oil_c_avg DOUBLE,
    intake_c_avg DOUBLE,
    battery_v_avg DOUBLE,
    tire_fl_bar_avg DOUBLE,
    tire_fr_bar_avg DOUBLE,
    tire_rl_bar_avg DOUBLE,
    tire_rr_bar_avg DOUBLE,
    fuel_rate_lph_avg DOUBLE,
    ambient_c_avg DOUBLE,
    speed_kmh_sd DOUBLE,
    rpm_sd DOUBLE,
    throttle_pct_sd DOUBLE,
    engine_load_pct_sd DOUBLE,
    coolant_c_sd DOUBLE,
    oil_c_sd DOUBLE,
    intake_c_sd DOUBLE,
    battery_v_sd DOUBLE,
    tire_fl_bar_sd DOUBLE,
    tire_fr_bar_sd DOUBLE,
    tire_rl_bar_sd DOUBLE,
    tire_rr_bar_sd DOUBLE,
    fuel_rate_lph_sd DOUBLE,
    ambient_c_sd DOUBLE
) WITH (kafka_topic='CAR_WINDOWS', value_format='JSON', window_type='HOPPING', window_size='20 SECONDS');

-- Every whole window (a car reports once a second) scored once: the score, whether it is an anomaly,
-- the feature contributing most and the model version that scored it.
CREATE STREAM car_scores AS SELECT
    car_id,
    AS_VALUE(car_id) AS car,
    WINDOWSTART AS window_start,
    ANOMALY('gaussian_20s@production',
      speed_kmh_avg, rpm_avg, throttle_pct_avg, engine_load_pct_avg, coolant_c_avg, oil_c_avg,
      intake_c_avg, battery_v_avg, tire_fl_bar_avg, tire_fr_bar_avg, tire_rl_bar_avg,
      tire_rr_bar_avg, fuel_rate_lph_avg, ambient_c_avg, speed_kmh_sd, rpm_sd, throttle_pct_sd,
      engine_load_pct_sd, coolant_c_sd, oil_c_sd, intake_c_sd, battery_v_sd, tire_fl_bar_sd,
      tire_fr_bar_sd, tire_rl_bar_sd, tire_rr_bar_sd, fuel_rate_lph_sd, ambient_c_sd) AS a
  FROM car_window_features
  WHERE readings = 20;

-- The alerts.
CREATE STREAM car_alerts AS SELECT
    car_id,
    car,
    window_start,
    ROUND(a->score, 1) AS score,
    a->cause AS cause,
    a->version AS version
  FROM car_scores
  WHERE a->is_anomaly;
