-- Tables of the RelayBox platform that the session service writes. The platform owns them; we
-- create them only where they are absent (a fresh or test database) and never alter existing ones.
CREATE TABLE IF NOT EXISTS applications (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  pid varchar(255) NOT NULL UNIQUE,
  name varchar(255),
  "createdAt" timestamp DEFAULT now(),
  "updatedAt" timestamp DEFAULT now()
);

CREATE TABLE IF NOT EXISTS sessions (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  "appId" uuid NOT NULL,
  "appPid" varchar(255) NOT NULL,
  "keyId" varchar(255),
  uid varchar(255) NOT NULL,
  "clientId" varchar(255),
  "connectionId" varchar(255) NOT NULL,
  "socketId" varchar(255),
  "createdAt" timestamp NOT NULL DEFAULT now(),
  "updatedAt" timestamp NOT NULL DEFAULT now(),
  "deletedAt" timestamp,
  "disconnectedAt" timestamp,
  CONSTRAINT sessions_uid_connection_id_unique UNIQUE (uid, "connectionId")
);
CREATE INDEX IF NOT EXISTS sessions_connection_id_idx ON sessions ("connectionId");

CREATE TABLE IF NOT EXISTS connections (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  "appId" uuid NOT NULL,
  "appPid" varchar(255) NOT NULL,
  uid varchar(255) NOT NULL,
  "clientId" varchar(255),
  "connectionId" varchar(255) NOT NULL,
  "socketId" varchar(255),
  "connectionEventType" varchar(32) NOT NULL,
  "connectionChange" integer NOT NULL,
  "createdAt" timestamp NOT NULL DEFAULT now(),
  CONSTRAINT connections_connection_id_event_type_unique UNIQUE ("connectionId", "connectionEventType")
);

CREATE TABLE IF NOT EXISTS authentication_users (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  "clientId" varchar(255),
  username varchar(255),
  "appId" uuid,
  "createdAt" timestamp DEFAULT now(),
  "updatedAt" timestamp DEFAULT now(),
  "isOnline" boolean,
  "lastOnline" timestamp
);
