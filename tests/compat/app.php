<?php
// app.php - the compatibility matrix's PHP application (tests/compat): what
// a PHP site does with its upload directory, one operation per request, on
// paths below the node's namespace directory.  The same script runs under
// Apache's mod_php and under PHP-FPM behind nginx; wsgi_app.py is its
// Python twin and answers the same requests:
//   GET  ?op=version                 the PHP version and SAPI
//   GET  ?op=read&p=REL              file_get_contents: the bytes, 404 when absent
//   POST ?op=write&p=REL             file_put_contents of the request body
//   POST ?op=rename&p=REL&to=REL2    rename
//   POST ?op=delete&p=REL            unlink
//   GET  ?op=list&p=REL              scandir: one name a line, without . and ..
// A failure answers 404 for "no such file" and 500 otherwise, with PHP's
// message.  @ROOT@ is put in when the script is installed on a node.
$root = '@ROOT@';
clearstatcache();

function fail($what)
{
    $e = error_get_last();
    $msg = $e ? $e['message'] : 'failed';
    http_response_code(strpos($msg, 'No such file') !== false ? 404 : 500);
    echo "$what: $msg\n";
    exit;
}

$op = $_GET['op'] ?? '';
$p = $root . '/' . ($_GET['p'] ?? '');
switch ($op) {
case 'version':
    echo 'PHP ', PHP_VERSION, ' (', php_sapi_name(), ')';
    break;
case 'read':
    $b = @file_get_contents($p);
    if ($b === false)
        fail('file_get_contents');
    echo $b;
    break;
case 'write':
    if (@file_put_contents($p, file_get_contents('php://input')) === false)
        fail('file_put_contents');
    break;
case 'rename':
    if (!@rename($p, $root . '/' . $_GET['to']))
        fail('rename');
    break;
case 'delete':
    if (!@unlink($p))
        fail('unlink');
    break;
case 'list':
    $l = @scandir($p);
    if ($l === false)
        fail('scandir');
    echo implode("\n", array_diff($l, ['.', '..']));
    break;
default:
    http_response_code(400);
    echo "unknown op\n";
}
