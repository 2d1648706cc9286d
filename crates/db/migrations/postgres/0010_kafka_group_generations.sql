-- A consumer group's Kafka group id moves to a new generation when the broker leaves the old one
-- unable to form (see ARCHITECTURE.md, "A broker pause on Tansu"); every process reads it here.
CREATE TABLE kafka_group_generations (
    consumer_group TEXT PRIMARY KEY,
    generation BIGINT NOT NULL
);
