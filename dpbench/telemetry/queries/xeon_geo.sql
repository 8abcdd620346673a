-- XeonGeo: per (processor class, OS), devices and the nrs-weighted means of each device's total
-- bytes received and sent (bytes = avg_bytes_sec * nrs * 5 summed over the device's rows).
SELECT
    processor_class,
    os,
    COUNT(DISTINCT guid) AS number_of_systems,
    SUM(nrs * avg_bytes_received) / SUM(nrs) AS avg_bytes_received,
    SUM(nrs * avg_bytes_sent) / SUM(nrs) AS avg_bytes_sent
FROM (
    SELECT
        a.guid,
        a.os,
        SUM(b.nrs) AS nrs,
        CASE WHEN a.cpuname = 'Xeon' THEN 'Server Class' ELSE 'Non-Server Class' END AS processor_class,
        SUM(CASE WHEN b.input_desc = 'OS:NETWORK INTERFACE::BYTES RECEIVED/SEC::'
                 THEN b.avg_bytes_sec * b.nrs * 5 ELSE 0 END) AS avg_bytes_received,
        SUM(CASE WHEN b.input_desc = 'OS:NETWORK INTERFACE::BYTES SENT/SEC::'
                 THEN b.avg_bytes_sec * b.nrs * 5 ELSE 0 END) AS avg_bytes_sent
    FROM system_sysinfo_unique_normalized a
    INNER JOIN system_network_consumption b ON a.guid = b.guid
    GROUP BY a.guid, a.cpuname, a.os
) c
GROUP BY processor_class, os
ORDER BY processor_class, os
