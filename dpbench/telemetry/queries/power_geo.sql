-- PowerGeo: per country, devices and the nrs-weighted mean package power.
SELECT
    a.countryname_normalized,
    COUNT(DISTINCT b.guid) AS number_of_systems,
    SUM(b.nrs * b.mean) / SUM(b.nrs) AS avg_pkg_power_consumed
FROM system_sysinfo_unique_normalized a
INNER JOIN system_hw_pkg_power b ON a.guid = b.guid
GROUP BY a.countryname_normalized
ORDER BY avg_pkg_power_consumed DESC
