// YamlToMsgpack: encodes a YAML node as msgpack, for plugin settings.
//
// Scalars become bool, integer, float or string, in that order of preference
// (a quoted scalar is always a string); sequences become arrays, maps become
// maps. A null node becomes nil.
#pragma once

#include <string>

namespace YAML {
class Node;
}

namespace umi {

std::string YamlToMsgpack(const YAML::Node& node);

}  // namespace umi
