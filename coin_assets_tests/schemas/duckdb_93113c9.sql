-- The DuckDB metadata schema as release 93113c9 (2026-11-24) created it (no uploads.source_modified, no ingest_state, coin_crops or serving tables, no year reading),
-- before the schema was versioned: the statements of its ensure functions, in order, then a few rows.
-- Read by coin_assets_tests/test_schema_migrations.py; statements end with ';' at the end of a line.

CREATE TABLE IF NOT EXISTS uploads (
    upload_key VARCHAR PRIMARY KEY,
    partition_date DATE NOT NULL,
    kind VARCHAR NOT NULL,
    coin_id VARCHAR,
    side VARCHAR,
    raw_name VARCHAR NOT NULL,
    raw_size BIGINT NOT NULL,
    sha256 VARCHAR NOT NULL,
    bronze_path VARCHAR NOT NULL,
    duplicate_of VARCHAR,
    user_id VARCHAR,
    uploaded_at TIMESTAMPTZ,
    ingested_at TIMESTAMPTZ NOT NULL,
    label_year INTEGER,
    label_note VARCHAR
);
CREATE TABLE IF NOT EXISTS silver_images (
    sha256 VARCHAR PRIMARY KEY,
    partition_date DATE NOT NULL,
    bronze_path VARCHAR NOT NULL,
    clean_name VARCHAR NOT NULL,
    clean_path VARCHAR NOT NULL,
    clean_size BIGINT NOT NULL,
    clean_width INTEGER NOT NULL,
    clean_height INTEGER NOT NULL,
    raw_format VARCHAR NOT NULL,
    raw_mode VARCHAR NOT NULL,
    raw_width INTEGER NOT NULL,
    raw_height INTEGER NOT NULL,
    exif_orientation INTEGER NOT NULL,
    notes VARCHAR,
    processed_at TIMESTAMPTZ NOT NULL
);
CREATE TABLE IF NOT EXISTS quarantine (
    upload_key VARCHAR NOT NULL,
    stage VARCHAR NOT NULL,
    partition_date DATE NOT NULL,
    bronze_path VARCHAR,
    sha256 VARCHAR,
    reason VARCHAR NOT NULL,
    recorded_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (upload_key, stage)
);
CREATE TABLE IF NOT EXISTS review_labels (
    coin_id VARCHAR NOT NULL,
    year INTEGER NOT NULL,
    reviewer VARCHAR NOT NULL,
    reviewed_at TIMESTAMPTZ NOT NULL,
    source VARCHAR NOT NULL,
    PRIMARY KEY (coin_id, reviewed_at)
);
CREATE TABLE IF NOT EXISTS predictions (
    coin_id VARCHAR NOT NULL,
    partition_date DATE NOT NULL,
    predicted_year DOUBLE NOT NULL,
    sigma DOUBLE NOT NULL,
    lower_90 DOUBLE NOT NULL,
    upper_90 DOUBLE NOT NULL,
    model_name VARCHAR NOT NULL,
    model_version VARCHAR NOT NULL,
    predicted_at TIMESTAMPTZ NOT NULL,
    dagster_run_id VARCHAR,
    PRIMARY KEY (coin_id, model_name, model_version)
);
CREATE TABLE IF NOT EXISTS gold_images (
    coin_id VARCHAR NOT NULL,
    side VARCHAR NOT NULL,
    partition_date DATE NOT NULL,
    user_id VARCHAR,
    uploaded_at TIMESTAMPTZ,
    ingested_at TIMESTAMPTZ NOT NULL,
    upload_key VARCHAR NOT NULL,
    raw_name VARCHAR NOT NULL,
    raw_path VARCHAR NOT NULL,
    raw_size BIGINT NOT NULL,
    raw_width INTEGER NOT NULL,
    raw_height INTEGER NOT NULL,
    clean_name VARCHAR NOT NULL,
    clean_path VARCHAR NOT NULL,
    clean_size BIGINT NOT NULL,
    clean_width INTEGER NOT NULL,
    clean_height INTEGER NOT NULL,
    gold_path VARCHAR NOT NULL,
    sha256 VARCHAR NOT NULL,
    label_year INTEGER,
    label_source VARCHAR,
    labelled_by VARCHAR,
    labelled_at TIMESTAMPTZ,
    model_version VARCHAR,
    PRIMARY KEY (coin_id, side)
);
CREATE OR REPLACE VIEW coins AS
SELECT
    coalesce(f.coin_id, b.coin_id) AS coin_id,
    coalesce(f.partition_date, b.partition_date) AS partition_date,
    coalesce(f.user_id, b.user_id) AS user_id,
    f.gold_path AS front_path,
    b.gold_path AS back_path,
    f.sha256 AS front_sha256,
    b.sha256 AS back_sha256,
    coalesce(f.label_year, b.label_year) AS label_year,
    coalesce(f.label_source, b.label_source) AS label_source,
    coalesce(f.model_version, b.model_version) AS model_version,
    f.coin_id IS NOT NULL AND b.coin_id IS NOT NULL AS paired
FROM (SELECT * FROM gold_images WHERE side = 'front') f
FULL OUTER JOIN (SELECT * FROM gold_images WHERE side = 'back') b USING (coin_id);
CREATE TABLE IF NOT EXISTS review_queue (
    coin_id VARCHAR NOT NULL,
    partition_date DATE NOT NULL,
    predicted_year DOUBLE NOT NULL,
    lower_90 DOUBLE NOT NULL,
    upper_90 DOUBLE NOT NULL,
    label_year INTEGER,
    model_version VARCHAR NOT NULL,
    reason VARCHAR NOT NULL,
    queued_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (coin_id, model_version)
);

INSERT INTO uploads (upload_key, partition_date, kind, coin_id, side, raw_name, raw_size, sha256, bronze_path,
    duplicate_of, user_id, uploaded_at, ingested_at, label_year, label_note) VALUES
    ('uploads/2026-11-20/c1__front.jpg', '2026-11-20', 'image', 'c1', 'front', 'c1__front.jpg', 1234, repeat('a', 64),
     'bronze/2026-11-20/c1__front.jpg', NULL, 'u-1', '2026-11-20 08:00:00+00', '2026-11-20 09:00:00+00', 1987, NULL),
    ('uploads/2026-11-20/c1__back.jpg', '2026-11-20', 'image', 'c1', 'back', 'c1__back.jpg', 2345, repeat('b', 64),
     'bronze/2026-11-20/c1__back.jpg', NULL, 'u-1', '2026-11-20 08:00:00+00', '2026-11-20 09:00:00+00', 1987, NULL);
INSERT INTO silver_images VALUES
    (repeat('a', 64), '2026-11-20', 'bronze/2026-11-20/c1__front.jpg', 'c1__front.png', 'silver/2026-11-20/c1__front.png',
     999, 512, 512, 'JPEG', 'RGB', 1024, 1024, 1, NULL, '2026-11-20 09:01:00+00');
INSERT INTO quarantine VALUES
    ('uploads/2026-11-20/notes.txt', 'silver', '2026-11-20', 'bronze/2026-11-20/notes.txt', repeat('c', 64),
     'not an image', '2026-11-20 09:01:00+00');
INSERT INTO review_labels VALUES ('c1', 1988, 'reviewer-1', '2026-11-21 10:00:00+00', 'review');
INSERT INTO predictions (coin_id, partition_date, predicted_year, sigma, lower_90, upper_90, model_name,
    model_version, predicted_at, dagster_run_id) VALUES
    ('c1', '2026-11-20', 1986.5, 3.0, 1981.6, 1991.4, 'coin_year_model', '4', '2026-11-20 09:10:00+00', 'run-2');
INSERT INTO gold_images VALUES
    ('c1', 'front', '2026-11-20', 'u-1', '2026-11-20 08:00:00+00', '2026-11-20 09:00:00+00',
     'uploads/2026-11-20/c1__front.jpg', 'c1__front.jpg', 'bronze/2026-11-20/c1__front.jpg', 1234, 1024, 1024,
     'c1__front.png', 'silver/2026-11-20/c1__front.png', 999, 512, 512, 'gold/2026-11-20/c1__front.png',
     repeat('a', 64), 1988, 'review', 'reviewer-1', '2026-11-21 10:00:00+00', '4'),
    ('c1', 'back', '2026-11-20', 'u-1', '2026-11-20 08:00:00+00', '2026-11-20 09:00:00+00',
     'uploads/2026-11-20/c1__back.jpg', 'c1__back.jpg', 'bronze/2026-11-20/c1__back.jpg', 2345, 1024, 1024,
     'c1__back.png', 'silver/2026-11-20/c1__back.png', 998, 512, 512, 'gold/2026-11-20/c1__back.png',
     repeat('b', 64), 1988, 'review', 'reviewer-1', '2026-11-21 10:00:00+00', '4');
INSERT INTO review_queue (coin_id, partition_date, predicted_year, lower_90, upper_90, label_year,
    model_version, reason, queued_at) VALUES
    ('c1', '2026-11-20', 1986.5, 1981.6, 1991.4, 1988, '4', 'predicted 1986.5 but labelled 1988',
     '2026-11-20 09:11:00+00');
