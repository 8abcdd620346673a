-- BatteryGeo: per country with more than 100 battery devices, the mean power-ons and minutes on
-- battery over (guid, day) rows.
SELECT
    b.countryname_normalized AS country,
    COUNT(DISTINCT a.guid) AS number_of_systems,
    AVG(a.num_power_ons) AS avg_number_of_dc_powerons,
    AVG(a.duration_mins) AS avg_duration
FROM system_batt_dc_events a
INNER JOIN system_sysinfo_unique_normalized b ON a.guid = b.guid
GROUP BY b.countryname_normalized
HAVING COUNT(DISTINCT a.guid) > 100
ORDER BY avg_number_of_dc_powerons DESC
