-- Store database, schema version 7 (the layout Guix's daemon requires; see
-- guix-libstore.md section 6). Every statement is idempotent, so opening a store
-- runs this file unconditionally inside one transaction.

create table if not exists ValidPaths (
    id               integer primary key autoincrement not null,
    path             text unique not null,
    hash             text not null,          -- "sha256:<base16>" of the path's NAR
    registrationTime integer not null,
    deriver          text,
    narSize          integer
);

-- Invariant: both ends of a reference are valid paths. A referrer takes its outgoing
-- references with it when it is deleted; a path that something still refers to
-- cannot be deleted.
create table if not exists Refs (
    referrer  integer not null,
    reference integer not null,
    primary key (referrer, reference),
    foreign key (referrer) references ValidPaths(id) on delete cascade,
    foreign key (reference) references ValidPaths(id) on delete restrict
);

create index if not exists IndexReferrer on Refs(referrer);
create index if not exists IndexReference on Refs(reference);

-- A path referring to itself would otherwise be undeletable under "restrict".
create trigger if not exists DeleteSelfRefs before delete on ValidPaths
  begin
    delete from Refs where referrer = old.id and reference = old.id;
  end;

create table if not exists DerivationOutputs (
    drv  integer not null,
    id   text not null,                      -- output name, e.g. "out"
    path text not null,
    primary key (drv, id),
    foreign key (drv) references ValidPaths(id) on delete cascade
);

create index if not exists IndexDerivationOutputs on DerivationOutputs(path);

create table if not exists FailedPaths (
    path text primary key not null,
    time integer not null
);
