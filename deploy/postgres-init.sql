-- Run once, on the first start of an empty data volume: the Prefect server's own database beside
-- tradelane's store (POSTGRES_DB). Both belong to POSTGRES_USER.
CREATE DATABASE prefect;
