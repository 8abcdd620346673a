-- ChassisAgg: per chassis type, devices present in all four package telemetry tables (inner joins on
-- guid only, as published) and the nrs-weighted means of platform power, C0 %, frequency and temperature.
-- The published join pairs every row of a device in one table with every row of it in the others; each
-- table is summed per device first and each sum weighted by the other tables' row counts, which is the
-- same answer without the product (a device with 40 days in each table is 2.6 million joined rows).
WITH
  a AS (SELECT guid, chassistype, COUNT(*)::DOUBLE AS r FROM system_sysinfo_unique_normalized GROUP BY ALL),
  b AS (SELECT guid, SUM(nrs * avg_psys_rap_watts) AS s, SUM(nrs) AS n, COUNT(*)::DOUBLE AS r
        FROM system_psys_rap_watts GROUP BY guid),
  c AS (SELECT guid, SUM(nrs * avg_pkg_c0) AS s, SUM(nrs) AS n, COUNT(*)::DOUBLE AS r
        FROM system_pkg_C0 GROUP BY guid),
  d AS (SELECT guid, SUM(nrs * avg_avg_freq_mhz) AS s, SUM(nrs) AS n, COUNT(*)::DOUBLE AS r
        FROM system_pkg_avg_freq_mhz GROUP BY guid),
  e AS (SELECT guid, SUM(nrs * avg_temp_centigrade) AS s, SUM(nrs) AS n, COUNT(*)::DOUBLE AS r
        FROM system_pkg_temp_centigrade GROUP BY guid)
SELECT
    a.chassistype,
    COUNT(DISTINCT a.guid) AS number_of_systems,
    SUM(a.r * b.s * c.r * d.r * e.r) / SUM(a.r * b.n * c.r * d.r * e.r) AS avg_psys_rap_watts,
    SUM(a.r * b.r * c.s * d.r * e.r) / SUM(a.r * b.r * c.n * d.r * e.r) AS avg_pkg_c0,
    SUM(a.r * b.r * c.r * d.s * e.r) / SUM(a.r * b.r * c.r * d.n * e.r) AS avg_freq_mhz,
    SUM(a.r * b.r * c.r * d.r * e.s) / SUM(a.r * b.r * c.r * d.r * e.n) AS avg_temp_centigrade
FROM a
INNER JOIN b ON a.guid = b.guid
INNER JOIN c ON a.guid = c.guid
INNER JOIN d ON a.guid = d.guid
INNER JOIN e ON a.guid = e.guid
GROUP BY a.chassistype
ORDER BY a.chassistype
