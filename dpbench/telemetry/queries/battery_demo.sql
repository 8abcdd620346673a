-- BatteryDemo: per (marketcodename, cpugen), known generations with more than 100 battery devices,
-- the mean minutes on battery over (guid, day) rows.
SELECT
    a.marketcodename,
    a.cpugen,
    COUNT(DISTINCT b.guid) AS number_of_systems,
    AVG(b.duration_mins) AS avg_duration_mins_on_battery
FROM system_cpu_metadata a
INNER JOIN system_batt_dc_events b ON a.guid = b.guid
WHERE a.cpugen <> 'Unknown'
GROUP BY a.marketcodename, a.cpugen
HAVING COUNT(DISTINCT b.guid) > 100
ORDER BY a.marketcodename, a.cpugen
