-- The serving request store as release 3a37afd (2026-12-06) created it on Postgres
-- (metadata.create_all, no alembic_version table), then a few rows.
-- Read by coin_assets_tests/test_schema_migrations.py and test_serving_store_postgres.py.

CREATE TABLE requests (
	id SERIAL NOT NULL,
	request_id VARCHAR(36) NOT NULL,
	created_at TIMESTAMP WITH TIME ZONE NOT NULL,
	status VARCHAR(16) NOT NULL,
	mode VARCHAR(8) NOT NULL,
	source VARCHAR(16) NOT NULL,
	user_id VARCHAR(200),
	client_coin_id VARCHAR(200),
	coin_id VARCHAR(64),
	model_name VARCHAR(200),
	model_version VARCHAR(32),
	front_sha256 VARCHAR(64),
	back_sha256 VARCHAR(64),
	front_key VARCHAR(300),
	back_key VARCHAR(300),
	sidecar_key VARCHAR(300),
	outcome VARCHAR(32),
	error TEXT,
	latency_ms FLOAT,
	claimed_by VARCHAR(200),
	lease_until TIMESTAMP WITH TIME ZONE,
	attempts INTEGER NOT NULL,
	completed_at TIMESTAMP WITH TIME ZONE,
	PRIMARY KEY (id),
	UNIQUE (request_id)
);
CREATE INDEX ix_requests_created_at ON requests (created_at);
CREATE INDEX ix_requests_status ON requests (status);
CREATE TABLE batch_requests (
	request_id VARCHAR(36) NOT NULL,
	batch_id VARCHAR(36) NOT NULL,
	position INTEGER NOT NULL,
	PRIMARY KEY (request_id),
	FOREIGN KEY(request_id) REFERENCES requests (request_id)
);
CREATE INDEX ix_batch_requests_batch_id ON batch_requests (batch_id);
CREATE TABLE feedback (
	id SERIAL NOT NULL,
	request_id VARCHAR(36) NOT NULL,
	year INTEGER NOT NULL,
	sender VARCHAR(200) NOT NULL,
	role VARCHAR(16) NOT NULL,
	status VARCHAR(24) NOT NULL,
	review_key VARCHAR(300),
	comment TEXT,
	created_at TIMESTAMP WITH TIME ZONE NOT NULL,
	PRIMARY KEY (id),
	FOREIGN KEY(request_id) REFERENCES requests (request_id)
);
CREATE INDEX ix_feedback_request_id ON feedback (request_id);
CREATE TABLE results (
	id SERIAL NOT NULL,
	request_id VARCHAR(36) NOT NULL,
	year FLOAT,
	sigma FLOAT,
	lower_90 FLOAT,
	upper_90 FLOAT,
	needs_review BOOLEAN,
	unreadable BOOLEAN,
	model_name VARCHAR(200),
	model_version VARCHAR(32),
	extra JSON,
	created_at TIMESTAMP WITH TIME ZONE NOT NULL,
	PRIMARY KEY (id),
	UNIQUE (request_id),
	FOREIGN KEY(request_id) REFERENCES requests (request_id)
);
INSERT INTO requests (request_id, created_at, status, mode, source, user_id, client_coin_id, coin_id, model_name,
    model_version, front_sha256, back_sha256, front_key, back_key, outcome, latency_ms, attempts, completed_at) VALUES
    ('11111111-1111-1111-1111-111111111111', '2026-12-01 09:30:00+00', 'completed', 'sync', 'api', 'u-1', 'my coin',
     'api-11111111-1111-1111-1111-111111111111', 'coin_year_model', '4', 'aaaa', 'bbbb',
     'uploads/2026-12-01/api-1__front.jpg', 'uploads/2026-12-01/api-1__back.jpg', 'ok', 41.5, 1,
     '2026-12-01 09:30:00.0415+00');
INSERT INTO requests (request_id, created_at, status, mode, source, coin_id, front_key, back_key, attempts) VALUES
    ('22222222-2222-2222-2222-222222222222', '2026-12-01 10:00:00+00', 'pending', 'async', 'api',
     'api-22222222-2222-2222-2222-222222222222', 'uploads/2026-12-01/api-2__front.jpg',
     'uploads/2026-12-01/api-2__back.jpg', 0);
INSERT INTO results (request_id, year, sigma, lower_90, upper_90, needs_review, unreadable, model_name, model_version,
    extra, created_at) VALUES
    ('11111111-1111-1111-1111-111111111111', 1987.5, 4.0, 1980.9, 1994.1, false, false, 'coin_year_model', '4',
     '{"reading": {"year": 1987}}', '2026-12-01 09:30:00.0415+00');
INSERT INTO feedback (request_id, year, sender, role, status, comment, created_at) VALUES
    ('11111111-1111-1111-1111-111111111111', 1988, 'u-1', 'user', 'label_submitted', 'the 8 is worn',
     '2026-12-01 11:00:00+00');
INSERT INTO batch_requests (request_id, batch_id, position) VALUES
    ('22222222-2222-2222-2222-222222222222', '33333333-3333-3333-3333-333333333333', 0);
