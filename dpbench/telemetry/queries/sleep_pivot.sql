-- SleepPivot: per (marketcodename, cpugen) with more than 100 devices, mean seconds per day on, off,
-- in modern standby, asleep and in total, and each state's share of the total.
SELECT
    b.marketcodename,
    b.cpugen,
    COUNT(DISTINCT a.guid) AS number_of_systems,
    ROUND(AVG(on_time), 2) AS avg_on_time,
    ROUND(AVG(off_time), 2) AS avg_off_time,
    ROUND(AVG(mods_time), 2) AS avg_modern_sleep_time,
    ROUND(AVG(sleep_time), 2) AS avg_sleep_time,
    ROUND(AVG(on_time + off_time + mods_time + sleep_time), 2) AS avg_total_time,
    ROUND(SUM(on_time) * 100.0 / SUM(on_time + off_time + mods_time + sleep_time), 2) AS avg_pcnt_on_time,
    ROUND(SUM(off_time) * 100.0 / SUM(on_time + off_time + mods_time + sleep_time), 2) AS avg_pcnt_off_time,
    ROUND(SUM(mods_time) * 100.0 / SUM(on_time + off_time + mods_time + sleep_time), 2) AS avg_pcnt_mods_time,
    ROUND(SUM(sleep_time) * 100.0 / SUM(on_time + off_time + mods_time + sleep_time), 2) AS avg_pcnt_sleep_time
FROM system_on_off_suspend_time_day a
INNER JOIN system_cpu_metadata b ON a.guid = b.guid
GROUP BY b.marketcodename, b.cpugen
HAVING COUNT(DISTINCT a.guid) > 100
ORDER BY b.marketcodename, b.cpugen
