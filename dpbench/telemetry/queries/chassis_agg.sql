-- ChassisAgg: per chassis type, devices present in all four package telemetry tables (inner joins on
-- guid only, as published) and the nrs-weighted means of platform power, C0 %, frequency and temperature.
SELECT
    a.chassistype,
    COUNT(DISTINCT a.guid) AS number_of_systems,
    SUM(b.nrs * b.avg_psys_rap_watts) / SUM(b.nrs) AS avg_psys_rap_watts,
    SUM(c.nrs * c.avg_pkg_c0) / SUM(c.nrs) AS avg_pkg_c0,
    SUM(d.nrs * d.avg_avg_freq_mhz) / SUM(d.nrs) AS avg_freq_mhz,
    SUM(e.nrs * e.avg_temp_centigrade) / SUM(e.nrs) AS avg_temp_centigrade
FROM system_sysinfo_unique_normalized a
INNER JOIN system_psys_rap_watts b ON a.guid = b.guid
INNER JOIN system_pkg_C0 c ON a.guid = c.guid
INNER JOIN system_pkg_avg_freq_mhz d ON a.guid = d.guid
INNER JOIN system_pkg_temp_centigrade e ON a.guid = e.guid
GROUP BY a.chassistype
ORDER BY a.chassistype
