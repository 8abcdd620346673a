-- RamHist: per RAM size in GB, devices and the nrs-weighted mean % of RAM used (rows with use > 0),
-- rounded.
SELECT
    sysinfo_ram / 1024 AS ram_gb,
    COUNT(DISTINCT guid) AS "count(DISTINCT guid)",
    ROUND(SUM(nrs * avg_percentage_used) / SUM(nrs)) AS avg_percentage_used
FROM system_memory_utilization
WHERE avg_percentage_used > 0
GROUP BY sysinfo_ram
ORDER BY sysinfo_ram
